"""Checksums and issuing rules that tell a real identifier from a number of the same shape."""

from __future__ import annotations

from typing import Final

# IBAN lengths per country (ISO 13616); an unknown country code is not an IBAN.
IBAN_LENGTHS: Final = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NL": 18,
    "NO": 15,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VG": 24,
    "XK": 20,
}
_DNI_LETTERS: Final = "TRWAGMYFPDXBNJZSQVHLCKE"


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer_length_valid(digits: str) -> bool:
    """True when the length fits the issuer the leading digits name (ISO/IEC 7812 ranges in use).

    A 17-digit order number can pass Luhn (one number in ten does); no issuer uses 17 digits
    except the 16-19 ranges below, so shape plus issuer cut most such collisions.
    """
    n = len(digits)
    first2 = int(digits[:2])
    first4 = int(digits[:4])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= first2 <= 55 or 2221 <= first4 <= 2720:  # Mastercard
        return n == 16
    if first2 in (34, 37):  # American Express
        return n == 15
    if first2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:  # Diners Club
        return 14 <= n <= 19
    if 3528 <= first4 <= 3589:  # JCB
        return 16 <= n <= 19
    if first4 == 6011 or first2 == 65 or 644 <= int(digits[:3]) <= 649 or first2 == 62:  # Discover, UnionPay
        return 16 <= n <= 19
    return False


def iban_valid(iban: str) -> bool:
    """True for an IBAN with a known country length and a valid ISO 7064 mod-97 check."""
    compact = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_valid(digits: str) -> bool:
    """US Social Security number issuing rules: area not 000, 666 or 9xx; group not 00; serial not 0000.

    Also refuses the numbers the SSA has declared void after they were printed in advertising.
    """
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ("078051120", "219099999", "123456789")


def spanish_dni_valid(value: str) -> bool:
    """DNI (8 digits + control letter) or NIE (X/Y/Z + 7 digits + control letter)."""
    compact = value.replace("-", "").replace(" ", "").upper()
    if len(compact) != 9:
        return False
    head, letter = compact[:8], compact[8]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    if not head.isdigit():
        return False
    return _DNI_LETTERS[int(head) % 23] == letter
