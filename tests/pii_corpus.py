"""A labelled corpus of support-chat messages for measuring PII redaction, generated from a seed.

Each message lists the PII values it holds (kind, exact substring); PII-free messages are full of
what a redactor must leave alone: order, tracking, invoice and ticket numbers, SKUs, ISBNs,
versions, timestamps, prices, delivery dates, product names and capitalised words after "I'm".
Used by tests/test_privacy_corpus.py (bounded, in CI) and benchmarks/privacy.py (the full figures).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path

HANDWRITTEN = Path(__file__).parent / "testdata" / "pii_handwritten.tsv"
HELD_OUT = Path(__file__).parent / "testdata" / "pii_heldout.tsv"
CATEGORIES = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "NAME", "ADDRESS", "DOB", "PASSPORT")
STRUCTURED = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP")


@dataclass(frozen=True)
class Message:
    text: str
    pii: tuple[tuple[str, str], ...]  # (category, the exact substring that must disappear)


FIRST = [
    "Sarah",
    "Maria",
    "John",
    "Priya",
    "Ahmed",
    "Lena",
    "Carlos",
    "Yuki",
    "Olivia",
    "Mateo",
    "Fatima",
    "David",
    "Chloe",
    "Rahul",
    "Anna",
    "Tom",
    "Isabella",
    "Kevin",
    "Nadia",
    "Lucas",
    "Emma",
    "Wei",
    "Grace",
    "Omar",
    "Julia",
    "Daniel",
    "Sofia",
    "Mark",
    "Elena",
    "Sean",
]
LAST = [
    "Whitfield",
    "Gonzalez",
    "Smith",
    "Patel",
    "Khan",
    "Schneider",
    "Ruiz",
    "Tanaka",
    "Brown",
    "Silva",
    "Haddad",
    "Miller",
    "Dubois",
    "Sharma",
    "Kowalski",
    "Nguyen",
    "Rossi",
    "O'Brien",
    "Fischer",
    "Moreau",
    "Johnson",
    "Chen",
    "Murphy",
    "Lopez",
    "Novak",
    "Andersen",
    "Costa",
    "Walker",
    "Ivanova",
    "Kelly",
]
STREETS_US = [
    "Sunset Road",
    "Maple Avenue",
    "Oak Street",
    "Cedar Lane",
    "Pine Drive",
    "Elm Court",
    "Lakeview Boulevard",
    "Hillcrest Way",
    "Washington St",
    "Park Ave",
    "River Rd",
    "Forest Ln",
]
CITIES_US = [
    ("Portland", "OR", "97209"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Columbus", "OH", "43215"),
    ("Seattle", "WA", "98101"),
    ("Madison", "WI", "53703"),
]
UK = [
    ("Baker Street", "London", "NW1 6XE"),
    ("High Street", "Oxford", "OX1 4AP"),
    ("Church Lane", "Leeds", "LS1 3EX"),
    ("Station Road", "Bristol", "BS1 6QF"),
]
FR = [
    ("rue de la Paix", "33000", "Bordeaux"),
    ("avenue Victor Hugo", "75016", "Paris"),
    ("boulevard Saint-Michel", "69002", "Lyon"),
    ("place du Marché", "44000", "Nantes"),
]
DE = [
    ("Hauptstraße", "10115", "Berlin"),
    ("Bahnhofstraße", "80335", "München"),
    ("Gartenweg", "50667", "Köln"),
    ("Lindenallee", "20095", "Hamburg"),
]
ES = [
    ("Calle Mayor", "28013", "Madrid"),
    ("Avenida de la Constitución", "41001", "Sevilla"),
    ("Calle de Alcalá", "28014", "Madrid"),
    ("Plaza Mayor", "37002", "Salamanca"),
]
IN = [
    ("MG Road", "Bengaluru", "560001"),
    ("Nehru Nagar", "Delhi", "110024"),
    ("Anna Salai Road", "Chennai", "600002"),
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PRODUCTS = [
    "AirFlow Pro",
    "Router X2",
    "Galaxy Buds",
    "Kindle Paperwhite",
    "ThinkPad T14",
    "Echo Dot",
    "Model S",
    "Premium Plan",
    "Family Bundle",
    "Nimbus 3000",
]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("ES", 24), ("NL", 18), ("IT", 27)])
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    if country in ("GB", "NL"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + bban[4:]
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    check = 98 - number % 97
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def _ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    sep = rng.choice(["-", "-", " ", ""])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def _phone(rng: random.Random) -> str:
    forms = [
        lambda: f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        lambda: f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        lambda: f"{rng.randint(201, 989)}.{rng.randint(200, 999)}.{rng.randint(0, 9999):04d}",
        lambda: f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        lambda: f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        lambda: f"06 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        lambda: f"+49 30 {rng.randint(1000000, 99999999)}",
        lambda: f"+91 {rng.randint(7000000000, 9999999999)}",
        lambda: f"{rng.randint(2012000000, 9899999999)}",  # bare, needs the cue in the template
        lambda: f"0800{rng.randint(10, 99)} {rng.randint(10000, 99999)}",
    ]
    return rng.choice(forms)()


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28)
    forms = [
        f"{m}/{d}/{y % 100:02d}",
        f"{d:02d}/{m:02d}/{y}",
        f"{y}-{m:02d}-{d:02d}",
        f"{d}.{m}.{y}",
        f"{d} {MONTHS[m - 1]} {y}",
        f"{MONTHS[m - 1]} {d}, {y}",
        f"{d}th of {MONTHS[m - 1]} {y}",
        f"{MONTHS[m - 1][:3]} {d} {y}",
    ]
    return rng.choice(forms)


def _address(rng: random.Random) -> str:
    style = rng.choice(["us", "us", "uk", "fr", "de", "es", "in"])
    if style == "us":
        city, state, zip_code = rng.choice(CITIES_US)
        unit = rng.choice(
            ["", f", Apt {rng.randint(1, 40)}{rng.choice('ABCD')}", f", Suite {rng.randint(100, 999)}"]
        )
        return f"{rng.randint(1, 9999)} {rng.choice(STREETS_US)}{unit}, {city}, {state} {zip_code}"
    if style == "uk":
        street, city, post = rng.choice(UK)
        return f"{rng.randint(1, 300)}{rng.choice(['', 'B'])} {street}, {city} {post}"
    if style == "fr":
        street, post, city = rng.choice(FR)
        return f"{rng.randint(1, 120)} {street}, {post} {city}"
    if style == "de":
        street, post, city = rng.choice(DE)
        return f"{street} {rng.randint(1, 150)}, {post} {city}"
    if style == "es":
        street, post, city = rng.choice(ES)
        return f"{street} {rng.randint(1, 150)}, {post} {city}"
    street, city, pin = rng.choice(IN)
    return f"Flat {rng.randint(1, 90)}, {street}, {city} {pin}"


def _passport(rng: random.Random) -> str:
    forms = [
        lambda: str(rng.randint(100000000, 999999999)),
        lambda: rng.choice(string.ascii_uppercase) + str(rng.randint(1000000, 9999999)),
        lambda: (
            "".join(rng.choice(string.ascii_uppercase) for _ in range(2)) + str(rng.randint(1000000, 9999999))
        ),
    ]
    return rng.choice(forms)()


def _value(kind: str, rng: random.Random) -> str:
    if kind == "EMAIL":
        first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower().replace("'", "")
        return rng.choice(
            [
                f"{first}.{last}@example.com",
                f"{first}{rng.randint(1, 99)}@mail.example.org",
                f"{first[0]}{last}@company.example.co.uk",
            ]
        )
    if kind == "PHONE":
        return _phone(rng)
    if kind == "CARD":
        prefix = rng.choice(["4", "51", "55", "37", "6011"])
        number = _luhn_complete(prefix, 15 if prefix == "37" else 16, rng)
        return rng.choice([number, " ".join(number[i : i + 4] for i in range(0, len(number), 4))])
    if kind == "SSN":
        return _ssn(rng)
    if kind == "IBAN":
        return _iban(rng)
    if kind == "IP":
        return rng.choice(
            [
                f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                f"2001:db8:{rng.randint(1, 9999)}::{rng.randint(1, 99)}",
            ]
        )
    if kind == "NAME":
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.8 else rng.choice(FIRST)
    if kind == "ADDRESS":
        return _address(rng)
    if kind == "DOB":
        return _date(rng)
    return _passport(rng)


TEMPLATES: dict[str, list[str]] = {
    "EMAIL": [
        "my email is {v}",
        "please send the receipt to {v} thanks",
        "you can reach me at {v}",
        "{v} is the address on the account",
        "update my contact email to {v}",
        "cc {v} on the refund",
    ],
    "PHONE": [
        "call me on {v}",
        "text me at {v} when it ships",
        "my phone number is {v}",
        "reach me on {v} after 5pm",
        "mobile: {v}",
        "whatsapp me {v} please",
        "my number is {v}",
    ],
    "CARD": [
        "charge my card {v} please",
        "the card number is {v}",
        "I paid with {v} and got charged twice",
        "use {v} exp 09/27",
    ],
    "SSN": [
        "my SSN is {v}",
        "social security number {v}",
        "my social is {v}",
        "SSN: {v} for the tax form",
        "for verification my ssn {v}",
    ],
    "IBAN": ["refund to IBAN {v} please", "my bank account is {v}", "wire it to {v}"],
    "IP": ["my IP is {v} and it is blocked", "login from {v} was not me", "whitelist {v} please"],
    "NAME": [
        "hi, this is {v}",
        "my name is {v} and I need help",
        "Hello, I'm {v}, my order is late",
        "please book a table for {v}",
        "Thanks,\n{v}",
        "Best regards, {v}",
        "Dear support, {v} here",
        "can I speak to {v}",
        "the booking is under Mr. {v}",
        "name: {v}",
        "I am {v} from accounting",
    ],
    "ADDRESS": [
        "ship it to {v}",
        "my address is {v}",
        "I moved to {v} last month",
        "deliver to {v} please",
        "the billing address is {v}",
    ],
    "DOB": [
        "my date of birth is {v}",
        "DOB: {v}",
        "I was born on {v}",
        "born {v}, need to verify age",
        "birthday {v}",
    ],
    "PASSPORT": [
        "passport no. {v}, issued 2019",
        "my passport number is {v}",
        "passport {v} expires in May",
        "driver's license number {v}",
        "my ID card number is {v}",
    ],
}


def _distractor(rng: random.Random) -> str:
    forms = [
        lambda: f"order #{rng.randint(100000, 99999999)} hasn't arrived",
        lambda: f"order number {_luhn_complete('4', 17, rng)} is missing an item",
        lambda: f"tracking number 1Z{rng.randint(100000000, 999999999)}{rng.randint(100000, 999999)}",
        lambda: f"tracking {rng.randint(9400100000000000000, 9499999999999999999)} shows delivered",
        lambda: f"invoice INV-{rng.randint(2019, 2026)}-{rng.randint(1000, 99999)} is wrong",
        lambda: f"invoice no. {rng.randint(100000000, 999999999)} was charged twice",
        lambda: f"ticket {rng.randint(100000, 9999999)} still open",
        lambda: (
            f"SKU {rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}-"
            f"{rng.randint(1000, 99999)}"
        ),
        lambda: (
            f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-"
            f"{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"
        ),
        lambda: (
            f"version {rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"
        ),
        lambda: (
            f"on 2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        ),
        lambda: f"it cost ${rng.randint(10, 2999)}.{rng.randint(0, 99):02d}",
        lambda: f"delivery was due {rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(23, 26)}",
        lambda: (
            f"I'm {rng.choice(['Happy', 'Not sure', 'Still waiting', 'Really upset', 'Confused'])} about this"
        ),
        lambda: f"this is {rng.choice(['Urgent', 'Ridiculous', 'The third time', 'Not what I ordered'])}",
        lambda: f"the {rng.choice(PRODUCTS)} stopped working",
        lambda: f"reference {rng.randint(10000000000, 99999999999)} from the bank transfer",
        lambda: f"confirmation code {rng.randint(100000000, 999999999)}",
        lambda: f"booking ref {rng.choice(string.ascii_uppercase)}{rng.randint(10000, 99999)}",
        lambda: f"model number {rng.randint(1000000000, 9999999999)} on the label",
        lambda: f"{rng.randint(2, 12)} items for {rng.choice(['Black Friday', 'Christmas', 'New York'])}",
        lambda: f"serial {rng.randint(100000000000, 999999999999)}",
        lambda: f"call me when order {rng.randint(1000000000, 9999999999)} ships",
        lambda: (
            f"my account {rng.choice(['premium', 'basic'])} plan renews on "
            f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"
        ),
        lambda: (
            f"meeting at {rng.randint(1, 12)}:{rng.choice(['00', '30'])} on "
            f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, 2025"
        ),
        lambda: f"room {rng.randint(100, 999)} at the {rng.choice(['Main Street', 'Park Avenue'])} store",
        lambda: f"I live near {rng.choice(['Oak Street', 'the station', 'Main Road'])}",
        lambda: f"the app crashed {rng.randint(2, 9)} times since the {rng.choice(['update', 'reboot'])}",
    ]
    return rng.choice(forms)()


FILLERS = ["", "Hi! ", "Hello, ", "Hey there. ", "Good morning, ", "Quick question: ", "Ugh. "]
ENDINGS = ["", ".", " thanks", " asap.", " — can you help?", "!"]


def generate(n_pii: int = 2400, n_clean: int = 1200, seed: int = 7) -> list[Message]:
    """``n_pii`` messages holding PII (evenly across CATEGORIES; some add a distractor), ``n_clean``
    PII-free messages of one to three distractors."""
    rng = random.Random(seed)
    out: list[Message] = []
    for i in range(n_pii):
        kind = CATEGORIES[i % len(CATEGORIES)]
        value = _value(kind, rng)
        if kind == "PHONE" and value.isdigit():
            template = rng.choice(
                [
                    "text me on {v}",
                    "call me at {v}",
                    "my phone number is {v}",
                    "reach me on {v}",
                    "my cell is {v}",
                ]
            )
        else:
            template = rng.choice(TEMPLATES[kind])
        text = rng.choice(FILLERS) + template.format(v=value) + rng.choice(ENDINGS)
        if rng.random() < 0.35:
            text = f"{text} Also, {_distractor(rng)}."
        out.append(Message(text, ((kind, value),)))
    for _ in range(n_clean):
        parts = [_distractor(rng) for _ in range(rng.randint(1, 3))]
        out.append(Message(rng.choice(FILLERS) + ", and ".join(parts) + rng.choice(ENDINGS), ()))
    return out + handwritten()


def handwritten(path: Path = HANDWRITTEN) -> list[Message]:
    """Cases written by hand (a TSV of category, text, value; NONE: no PII). ``HELD_OUT`` holds
    messages written after the detectors, in other phrasings, to score them on text not tuned for."""
    rows: list[Message] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        kind, text, value = line.split("\t")
        text = text.replace("\\n", "\n")
        rows.append(Message(text, () if kind == "NONE" else ((kind, value),)))
    return rows
