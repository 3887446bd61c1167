"""Street addresses: a house number and a street word, then the unit, city and postcode after it.

Styles: US/UK/IN ("7098 Sunset Road, Apt 33D, Portland, OR 97209", "221B Baker Street, London
NW1 6XE", "Flat 12, MG Road, Bengaluru 560001"), FR ("4 rue de la Paix, 33000 Bordeaux"),
DE ("Hauptstraße 5, 10115 Berlin"), ES ("Calle Mayor 12, 3º B, 28013 Madrid"). The street part
must be there; a bare city or postcode is not an address.
"""

from __future__ import annotations

import re
from typing import Final

from otel_chatbot.privacy.spans import Found
from otel_chatbot.privacy.view import TextView, gate

_STREET_WORDS: Final = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Av|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace"
    r"|Close|Crescent|Cres|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Row|Gardens|Mews|Grove"
    r"|Nagar|Marg|Chowk|Layout|Colony|Enclave|Vihar)\b\.?"
)
_NAME_WORD: Final = r"(?:[A-Z][A-Za-z'-]+|[0-9]{1,3}(?:st|nd|rd|th)|[A-Z]{1,3})"
_UNIT: Final = (
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building|#)\.? ?#?"
    r"[0-9A-Za-z-]{1,6})"
)
_CITY: Final = r"(?:,? [A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2})"
_US_TAIL: Final = r"(?:,? [A-Z]{2},? [0-9]{5}(?:-[0-9]{4})?)"
_UK_POSTCODE: Final = r"(?:,? [A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})"
_IN_PIN: Final = r"(?:,? ?-? ?[1-9][0-9]{2} ?[0-9]{3})"
_POSTCODE_CITY: Final = r"(?:,? [0-9]{4,5} [A-Z][a-zé]+(?:[ -][A-Z][a-zé]+)?)"

# Starts at the house number (a plain leading class: fast to scan for); the left boundary is
# checked in code.
_ENGLISH_RE: Final = re.compile(
    rf"[0-9]{{1,5}}[A-Za-z]?(?:[/-][0-9]{{1,4}})?,? (?:{_NAME_WORD} ){{1,4}}{_STREET_WORDS}"
    rf"{_UNIT}?(?:{_CITY}(?:{_US_TAIL}|{_UK_POSTCODE}|{_IN_PIN})?|{_US_TAIL}|{_UK_POSTCODE})?"
)
# "Flat 12, MG Road, …": a unit first, then a street without a house number.
_UNIT_FIRST_GATE: Final = gate("flat house plot door apt apartment")
_UNIT_FIRST_RE: Final = re.compile(
    rf"(?:Flat|House|Plot|Door|Apt|Apartment|H\.? ?No\.?) ?(?:No\.? ?)?[0-9A-Z/-]{{1,6}}, "
    rf"(?:{_NAME_WORD} ){{1,4}}{_STREET_WORDS}(?:,? Sector [0-9]{{1,3}})?{_CITY}?{_IN_PIN}?"
)
# Indian addresses often have no street word: "House No. 45, Sector 17, Chandigarh 160017".
_SECTOR_RE: Final = re.compile(
    r"(?:House|H\.? ?No\.?|Plot|Flat|Door) ?(?:No\.? ?)?[0-9]{1,5}[A-Z]?, "
    r"(?:Sector|Block|Phase|Ward) [0-9]{1,3}[A-Z]?"
    rf"{_CITY}?{_IN_PIN}?"
)
_FRENCH_RE: Final = re.compile(
    r"(?i:\b[0-9]{1,4}(?: ?(?:bis|ter))?,? (?:rue|avenue|av\.|boulevard|bd|place|chemin|all[ée]e|impasse"
    r"|quai|route|cours|passage)\b)"
    r" (?:(?:de la|du|des|de l'|d'|de|la|le|les)[ ']?)?[A-Za-zÀ-ÿ'-]+(?: [A-ZÀ-Ý][A-Za-zÀ-ÿ'-]+){0,3}"
    rf"{_POSTCODE_CITY}?"
)
_GERMAN_RE: Final = re.compile(
    r"\b[A-ZÄÖÜ][a-zäöüß-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee)"
    rf" [0-9]{{1,4}}[a-z]?{_POSTCODE_CITY}?"
)
_SPANISH_RE: Final = re.compile(
    r"\b(?:Calle|C/|Avenida|Avda\.?|Plaza|Paseo|Camino|Carrera|Ronda|Travesía|Carretera) "
    r"(?:(?:de la|de los|de las|del|de) )?[A-ZÁÉÍÓÚÑ][A-Za-zÁÉÍÓÚáéíóúñ'-]+"
    r"(?: [A-ZÁÉÍÓÚÑ][A-Za-záéíóúñ'-]+){0,2}"
    r",? (?:n[ºo°]\.? ?)?[0-9]{1,4}(?:,? [0-9]{1,2}[ºª°]? ?[A-Z]?\b)?"
    rf"{_POSTCODE_CITY}?"
)
_ENGLISH_GATE: Final = gate(
    "street st road rd boulevard blvd avenue ave av lane ln drive dr court ct way place pl terrace close "
    "crescent cres parkway pkwy highway hwy square sq circle cir trail row gardens mews grove nagar marg "
    "chowk layout colony enclave vihar"
)
_FOREIGN_GATE: Final = gate(
    "rue avenue av boulevard bd place chemin allée allee impasse quai route cours passage calle c avenida "
    "avda plaza paseo camino carrera ronda travesía carretera"
)
# German street names are compounds ("Hauptstraße", "Gartenweg"): their endings are looked for as
# byte strings in the UTF-8 text ("str" covers -straße, -strasse and -str.), a substring search each.
_GERMAN_PARTS: Final = tuple(part.encode() for part in (
    "str", "weg", "allee", "platz", "gasse", "ring ", "damm", "ufer", "chaussee"))


def addresses(view: TextView) -> list[Found]:
    text = view.text
    words = view.words
    found: list[Found] = []
    if words & _ENGLISH_GATE:
        found.extend(
            Found(m.start(), m.end(), "ADDRESS")
            for m in _ENGLISH_RE.finditer(text)
            if m.start() == 0 or not text[m.start() - 1].isalnum()
        )
    if words & _UNIT_FIRST_GATE:
        found.extend(Found(m.start(), m.end(), "ADDRESS") for m in _UNIT_FIRST_RE.finditer(text))
        found.extend(Found(m.start(), m.end(), "ADDRESS") for m in _SECTOR_RE.finditer(text))
    if words & _FOREIGN_GATE:
        for pattern in (_FRENCH_RE, _SPANISH_RE):
            found.extend(Found(m.start(), m.end(), "ADDRESS") for m in pattern.finditer(text))
    if _has_german_street(view.raw):
        found.extend(Found(m.start(), m.end(), "ADDRESS") for m in _GERMAN_RE.finditer(text))
    return found


def _has_german_street(raw: bytes) -> bool:
    return any(part in raw for part in _GERMAN_PARTS)
