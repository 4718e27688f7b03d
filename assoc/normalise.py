"""Raw signal value -> canonical value, per signal kind.

Exports write one identifier in many ways (`+86 138 0013 8000`, `0086-13800138000`, `138-0013-8000`);
the scanner compares canonical values, so every way of writing one identifier must normalise to one
value, and different identifiers must stay different. `normalise` also says when a value is weak (it says
little about who uses it: a private IP, a randomised MAC, a warehouse address) and adds blocking keys
(an IP's /24, an address's building) that let the scanner find near matches without comparing all pairs.

Every result is a fixed point: `normalise(kind, n.value, country=c).value == n.value`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import phonenumbers
from rapidfuzz import fuzz


@dataclass(frozen=True, slots=True)
class Normalised:
    """A canonical signal value, whether it is weak evidence (and why), and extra blocking keys."""

    kind: str
    value: str
    weak: bool = False
    note: str = ""
    keys: tuple[tuple[str, str], ...] = ()


def normalise(kind: str, raw: str, *, country: str | None = None) -> Normalised | None:
    """Canonical form of one raw signal value; `country` is the store's ISO alpha-2 country (phones).

    None when the value carries no information (empty, placeholder such as all zeros, unparseable
    garbage). Unknown kinds keep their value apart from surrounding whitespace.
    """
    kind = kind.strip().lower()
    if not raw or raw.isspace():
        return None
    normaliser = _NORMALISERS.get(kind)
    if normaliser is None:
        return Normalised(kind, raw.strip())
    return normaliser(kind, raw, country)


# Values exports write when they do not know the real one; they would link every store that has them.
_PLACEHOLDERS = frozenset({
    "unknown", "null", "(null)", "nil", "none", "n/a", "na", "undefined", "unavailable", "not available", "-",
})


def _is_placeholder(text: str) -> bool:
    return text.lower() in _PLACEHOLDERS or len(set(text)) == 1


def _fold(text: str) -> str:
    """Compatibility forms, accents and case folded away (`Ｂａｏ’ＡＮ` and `Bao'an` read alike)."""
    if text.isascii():
        return text.lower()                  # the common case, and 10x faster
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return unicodedata.normalize("NFKC", "".join(c for c in text if not unicodedata.combining(c)))


# ----------------------------------------------------------------------------------------------- ip

def _ip_ranges(table: list[tuple[str, str]]) -> tuple[tuple[int, int, str], ...]:
    networks = [(ipaddress.ip_network(cidr), note) for cidr, note in table]
    return tuple((int(net.network_address), int(net.broadcast_address), note) for net, note in networks)


# First match wins, so a more specific range comes before the range holding it.
_IPV4_WEAK = _ip_ranges([
    ("0.0.0.0/8", "reserved"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link_local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved"), ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"), ("198.18.0.0/15", "reserved"), ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
])
# Most addresses are public: their first octet alone rules the weak ranges out.
_IPV4_WEAK_FIRST_OCTETS = frozenset(
    octet for low, high, _ in _IPV4_WEAK for octet in range(low >> 24, (high >> 24) + 1)
)
_IPV6_WEAK = _ip_ranges([
    ("::1/128", "loopback"), ("fe80::/10", "link_local"), ("ff00::/8", "multicast"), ("fc00::/7", "private"),
    ("2001:db8::/32", "reserved"), ("2001::/23", "reserved"),
])
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")


def _normalise_ip(kind: str, raw: str, country: str | None) -> Normalised | None:
    host = raw.strip()
    if host.startswith("["):                      # [v6]:port
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:                    # v4:port
        host = host.partition(":")[0]
    host = host.partition("%")[0].partition("/")[0]   # zone id, prefix length
    if v4 := _IPV4.fullmatch(host):
        # Parsed by hand: IPs are most of a bundle's rows and ipaddress is slow. Zero-padded octets
        # (010.001.002.003) are decimal in exports, though ipaddress rejects them as ambiguous octal.
        return _normalise_ipv4(kind, [int(octet) for octet in v4.groups()])
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if ip.ipv4_mapped is not None:
        return _normalise_ipv4(kind, list(ip.ipv4_mapped.packed))
    if ip.is_unspecified:
        return None                               # what a logger writes when it has no address
    number = int(ip)
    note = next((n for low, high, n in _IPV6_WEAK if low <= number <= high), "")
    if not note and ip not in _GLOBAL_UNICAST_V6:
        note = "reserved"                         # not routable on the internet
    if note:
        return Normalised(kind, str(ip), True, note)
    prefix = ":".join(f"{number >> shift & 0xFFFF:x}" for shift in (112, 96, 80, 64))
    return Normalised(kind, str(ip), keys=(("ip/64", prefix),))


def _normalise_ipv4(kind: str, octets: list[int]) -> Normalised | None:
    if max(octets) > 255 or not any(octets):      # 0.0.0.0: what a logger writes when it has no address
        return None
    a, b, c, d = octets
    number = a << 24 | b << 16 | c << 8 | d
    note = ""
    if a in _IPV4_WEAK_FIRST_OCTETS:
        note = next((n for low, high, n in _IPV4_WEAK if low <= number <= high), "")
    if note:
        # The subnet of a private or carrier-NAT address is shared by unrelated users: no blocking key.
        return Normalised(kind, f"{a}.{b}.{c}.{d}", True, note)
    return Normalised(kind, f"{a}.{b}.{c}.{d}", keys=(("ip/24", f"{a}.{b}.{c}"),))


# ---------------------------------------------------------------------------------------------- mac

_MAC_SEPARATED = re.compile(r"[0-9a-f]{1,2}([:-])[0-9a-f]{1,2}(?:\1[0-9a-f]{1,2}){4}")
_MAC_NOISE = re.compile(r"[\s:.\-]")
_HEX12 = re.compile(r"[0-9a-f]{12}")
# All zeros and broadcast are placeholders; Android (6.0+) reports 02:00:00:00:00:00 to every app
# that asks for the Wi-Fi MAC, so it names no device either.
_MAC_PLACEHOLDERS = frozenset({"000000000000", "ffffffffffff", "020000000000"})


def _normalise_mac(kind: str, raw: str, country: str | None) -> Normalised | None:
    text = raw.strip().lower()
    if _MAC_SEPARATED.fullmatch(text):            # also `0:1c:42:...`, where tools drop leading zeros
        digits = "".join(octet.zfill(2) for octet in re.split("[:-]", text))
    else:
        digits = _MAC_NOISE.sub("", text)
    if not _HEX12.fullmatch(digits) or digits in _MAC_PLACEHOLDERS:
        return None
    first_octet = int(digits[:2], 16)
    note = "multicast" if first_octet & 1 else "locally_administered" if first_octet & 2 else ""
    value = ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    return Normalised(kind, value, bool(note), note)


# --------------------------------------------------------------------------- device_id, browser_fp

_HEX_ID = re.compile(r"[0-9a-f-]+")
_BRACED = re.compile(r"\{([0-9a-fA-F-]+)\}")


def _normalise_opaque_id(kind: str, raw: str, country: str | None) -> Normalised | None:
    text = raw.strip()
    if braced := _BRACED.fullmatch(text):
        text = braced.group(1)
    if text.lower().startswith("urn:uuid:"):
        text = text[9:]
    if _HEX_ID.fullmatch(lowered := text.lower()):
        # Hex ids and UUIDs are case-insensitive, and their dashes are layout, not content.
        text = lowered.replace("-", "")
    if not text or _is_placeholder(text) or _is_placeholder(text.replace("-", "")):
        return None
    return Normalised(kind, text)


# -------------------------------------------------------------------------------------------- phone

_TEL_PREFIX = re.compile(r"^\s*tel:", re.IGNORECASE)
_EXTENSION = re.compile(r"(?:\s*(?:ext(?:ension)?\.?|x|#)\s*|;ext=)\d{1,6}\s*$", re.IGNORECASE)
_INTERNATIONAL = re.compile(r"^[\s(\[]*\+")


class _Dialled(NamedTuple):
    e164: str                   # the valid number in E.164, or "" when no reading is valid
    national: str               # its national significant number, or ""
    digits: str                 # the digits as written
    international: bool         # whether the writer marked it international ('+')


def _region(country: str | None) -> str | None:
    country = (country or "").strip().upper()
    return country if len(country) == 2 and country.isascii() and country.isalpha() else None


@functools.lru_cache(maxsize=65536)  # exports repeat one number many times, and phonenumbers is slow
def _dial(raw: str, region: str | None) -> _Dialled:
    """The first valid reading of a written phone number, national (in `region`) before international."""
    text = _EXTENSION.sub("", _TEL_PREFIX.sub("", unicodedata.normalize("NFKC", raw)))
    digits = "".join(c for c in text if c.isdecimal() and c.isascii())
    international = bool(_INTERNATIONAL.match(text))
    if international:
        candidates = ["+" + digits]
    else:
        # National first (the store's country), then the number read as international: exports drop
        # the '+' (`8613599133116`) or write the '00' prefix in countries whose prefix is not 00.
        candidates = [digits, "+" + digits[2:]] if digits.startswith("00") else [digits]
        if not digits.startswith("1"):
            # A leading 1 is as often a trunk prefix or the start of a Chinese mobile (178...) as the
            # NANP country code: +1 786... would be a valid, wrong reading.
            candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, None if candidate.startswith("+") else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return _Dialled(e164, phonenumbers.national_significant_number(number), digits, international)
    return _Dialled("", "", digits, international)


def _normalise_phone(kind: str, raw: str, country: str | None) -> Normalised | None:
    e164, national, digits, international = _dial(raw, _region(country))
    if e164:
        # The national number is also a key: the same mobile written nationally by a store in
        # another country (a mainland number on a Hong Kong store) reads as no valid number there.
        return Normalised(kind, e164, keys=(("phone/national", national),))
    # Not a valid number (or one of another country written nationally): keep its digits, with the
    # '+' when the writer meant an international number, so that the fallback is itself a fixed point.
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if len(digits) < 6 or _is_placeholder(digits):
        return None
    if international:
        return Normalised(kind, "+" + digits)
    return Normalised(kind, digits, keys=(("phone/national", digits.lstrip("0")),))


# -------------------------------------------------------------------------------------------- email

_MAILTO = re.compile(r"^(?:mailto:)+")
_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>\s*$")
_EMAIL_LOCAL = re.compile(r"[^\s@<>()\[\]\\,;:\"]+")
_EMAIL_DOMAIN = re.compile(r"[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)+")
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
# Providers that deliver `a.b.c@` to `abc@`: the dots do not tell two mailboxes apart.
_DOTS_IGNORED = frozenset({"gmail.com"})
# Providers documenting plus addressing (`name+tag@` delivers to `name@`). Yahoo's '-' addresses are
# separately created aliases, not tags of the base name, so Yahoo is not listed.
_PLUS_TAGS = frozenset({
    "gmail.com",
    "outlook.com", "hotmail.com", "live.com", "msn.com",           # Microsoft: plus addressing
    "icloud.com", "me.com", "mac.com",                             # Apple: iCloud+ plus addressing
    "proton.me", "protonmail.com", "pm.me", "fastmail.com",
})


def _email(raw: str) -> str | None:
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    if angle := _ANGLE_ADDRESS.search(text):     # `Shop Owner <owner@example.com>`
        text = angle.group(1)
    text = "".join(_MAILTO.sub("", text.strip()).split())
    local, _, domain = text.rpartition("@")
    domain = domain.rstrip(".")
    if not _EMAIL_LOCAL.fullmatch(local) or not _EMAIL_DOMAIN.fullmatch(domain):
        return None
    domain = _DOMAIN_ALIASES.get(domain, domain)
    if domain in _PLUS_TAGS:
        local = local.partition("+")[0]
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


def _normalise_email(kind: str, raw: str, country: str | None) -> Normalised | None:
    value = _email(raw)
    return Normalised(kind, value) if value else None


# ---------------------------------------------------------------------------------- payment_account

# Longest first, so that `lianlian pay` is stripped whole rather than leaving `pay`.
_PAYMENT_PROVIDERS = sorted([
    "alipay", "wechat pay", "wechatpay", "wechat", "weixin", "unionpay", "union pay", "bank card",
    "bank account", "bank", "card", "paypal", "payoneer", "pingpong", "ping pong", "worldfirst",
    "world first", "lianlian pay", "lianlianpay", "lianlian", "wise", "transferwise", "iban", "airwallex",
    "skrill", "stripe", "account", "acct",
], key=len, reverse=True)
_PROVIDER_ALTERNATIVES = "|".join(re.escape(p) for p in _PAYMENT_PROVIDERS)
_PROVIDER_PREFIX = re.compile(rf"^({_PROVIDER_ALTERNATIVES})(?:\s*[:\-_#]\s*|\s+|$)")
_PROVIDER_SUFFIX = re.compile(rf"\s*[(\[]\s*({_PROVIDER_ALTERNATIVES})\s*[)\]]\s*$")
# Wallets whose account is the holder's phone number.
_PHONE_WALLETS = frozenset({"alipay", "wechat pay", "wechatpay", "wechat", "weixin"})
_PHONE_LIKE = re.compile(r"\+?[\d\s\-().]{7,24}")
_ACCOUNT_SEPARATORS = re.compile(r"[\s\-./_]")
# A short letter tag glued to a long digit run is a provider or country tag (PP123..., LL-88..., WF-...,
# CN 6214...), not part of the account number, and exports write it only sometimes.
_TAGGED_NUMBER = re.compile(r"[a-z]{1,3}(\d{6,})")


def _payment_once(raw: str) -> tuple[str, str] | None:
    """(canonical account, weakness note) after one round of stripping provider tags."""
    text = _fold(raw).strip()
    providers = set()
    while suffix := _PROVIDER_SUFFIX.search(text):
        providers.add(suffix.group(1))
        text = text[:suffix.start()]
    while prefix := _PROVIDER_PREFIX.match(text):
        providers.add(prefix.group(1))
        text = text[prefix.end():]
    if "@" in text and (email := _email(text)):
        return email, ""
    if _PHONE_LIKE.fullmatch(text) and (text.startswith("+") or providers & _PHONE_WALLETS):
        # Wallet ids are phone numbers written with or without country code: keep the national number,
        # which is what every variant has in common. Not read with the store's country: a US store's
        # `alipay:18644706885` is a Chinese mobile, not +1 864...
        digits = "".join(c for c in text if c.isdecimal() and c.isascii())
        if text.startswith("+") or digits.startswith("00"):
            dialled = _dial(text, None)
            text = dialled.national or digits.removeprefix("00")
        else:
            text = digits.removeprefix("0")       # the trunk prefix of a nationally written number
    account = _ACCOUNT_SEPARATORS.sub("", text)
    if tagged := _TAGGED_NUMBER.fullmatch(account):
        account = tagged.group(1)
    if len(account) < 4 or _is_placeholder(account) or _is_placeholder(account.strip("*")):
        return None
    # Exports that mask card numbers (6222****1234) make unrelated accounts look alike.
    return account, "masked" if "*" in account else ""


def _normalise_payment(kind: str, raw: str, country: str | None) -> Normalised | None:
    result = _payment_once(raw)
    # Normalising can expose another tag (gmail dots hiding `wise-`), and a canonical value must not
    # carry one, or normalising it again would strip it. Each round strips at least one character.
    while result and (_PROVIDER_PREFIX.match(result[0]) or _PROVIDER_SUFFIX.search(result[0])):
        result = _payment_once(result[0])
    if result is None:
        return None
    value, note = result
    return Normalised(kind, value, bool(note), note)


# ------------------------------------------------------------------------------------------- tax_id

_NOT_ALNUM_ASCII = re.compile(r"[^0-9A-Z]")
# EU VAT numbers carry their country code (DE123456789); registries and invoices often omit it.
# Stripped only when digits follow, so that identifiers that merely start with letters are kept.
_VAT_PREFIX = re.compile(
    r"^(?:AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|GB|XI|CHE)(?=\d)"
)


def _normalise_tax_id(kind: str, raw: str, country: str | None) -> Normalised | None:
    if _is_placeholder(raw.strip()):
        return None
    value = _VAT_PREFIX.sub("", _NOT_ALNUM_ASCII.sub("", _fold(raw).upper()))
    if not value or _is_placeholder(value):
        return None
    return Normalised(kind, value)


# -------------------------------------------------------------------------------------- person_name

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD_JOINERS = re.compile(r"(?<=\w)['’\-‐](?=\w)")
_NAME_TOKEN = re.compile(r"[^\W_]+")
# Common Chinese surnames in romanisation, most common first (mainland pinyin by the 2020 census, then
# Hong Kong and Taiwan spellings at the rank of the same surname). Only used to tell which end of a name
# of three or more parts is the surname.
_SURNAME_RANK = {
    name: rank for rank, name in reversed(list(enumerate((
        "wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he lin gao luo zheng liang xie "
        "song tang xu han deng feng cao peng zeng xiao tian dong pan yuan cai jiang yu yu du ye cheng wei su "
        "lv ding ren lu yao shen zhong jiang cui tan lu fan wang liao shi jin wei jia xia fu fang zou xiong "
        "bai meng qin qiu hou jiang yin xue yan duan lei long li shi tao he mao hao gu gong shao wan qin wu "
        "qian dai yan mo kong xiang chang"
    ).split(), start=1)))
} | {
    "wong": 1, "lee": 2, "cheung": 3, "chang": 3, "lau": 4, "chan": 5, "yeung": 6, "chiu": 8,
    "ng": 9, "chow": 10, "chou": 10, "hsu": 11, "tsui": 11, "kwok": 16, "kuo": 16, "ho": 17, "lam": 18,
    "law": 20, "cheng": 21, "leung": 22, "tse": 23, "hsieh": 23, "fung": 29, "tsang": 32, "siu": 33,
    "tsai": 38, "choi": 38, "chiang": 39, "yip": 43, "lo": 50, "tam": 56,
}
# Parts of a surname-last name are read that way only when the last part is a clearly more common
# surname than the first (`Hao Shan Huang`); otherwise the surname-first order of Chinese exports wins.
_SURNAME_LAST_MARGIN = 4


def _normalise_person_name(kind: str, raw: str, country: str | None) -> Normalised | None:
    """Canonical name: the surname and the given name, each one word, in sorted order.

    Exports swap the order (`Huang Haoshan`, `Haoshan Huang`), change case (`HUANG Haoshan`), and split
    or hyphenate the given name (`Huang Hao Shan`, `Huang Hao-shan`). Sorting the two parts absorbs the
    order; writing each part as one word absorbs the splits. A name in more than two parts is read as
    surname + given name: a comma, or a lone all-capitals part (`Hao Shan HUANG`), says which part is the
    surname; otherwise the first, unless the last is a far more common surname. Sorting all letters
    or all syllables would merge different people (`Wang Lin` / `Wan Ling`, `Li Weiming` / `Wei Liming`).
    Names in Chinese, Japanese or Korean script are written surname-first without spaces: spaces go.
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    if _is_placeholder(text):
        return None
    if _CJK.search(folded := _fold(text)):
        value = "".join(_NAME_TOKEN.findall(folded))
    else:
        text = _WORD_JOINERS.sub("", text)
        surname_part, comma, given_part = text.partition(",")
        if comma and _NAME_TOKEN.search(surname_part) and _NAME_TOKEN.search(given_part):
            words = [_name_word(surname_part), _name_word(given_part)]
        else:
            written = _NAME_TOKEN.findall(text)
            words = [_name_word(w) for w in written]
            if len(words) > 2:
                words = _surname_and_given(written, words)
        value = " ".join(sorted(w for w in words if w))
    return Normalised(kind, value) if value and not _is_placeholder(value) else None


def _name_word(text: str) -> str:
    return "".join(_NAME_TOKEN.findall(_fold(text)))


def _surname_and_given(written: list[str], tokens: list[str]) -> list[str]:
    capitals = [i for i, t in enumerate(written) if len(t) > 1 and t.isupper()]
    if len(capitals) == 1 and len(capitals) < len(written):
        surname = capitals[0]
    else:
        first = _SURNAME_RANK.get(tokens[0], len(_SURNAME_RANK) * _SURNAME_LAST_MARGIN)
        last = _SURNAME_RANK.get(tokens[-1])
        surname = len(tokens) - 1 if last is not None and last * _SURNAME_LAST_MARGIN < first else 0
    return [tokens[surname], "".join(t for i, t in enumerate(tokens) if i != surname)]


# ------------------------------------------------------------------------------------------ address

_ROOM, _FLOOR, _BUILDING, _NUMBER = "room", "floor", "building", "no"
_LABELS = {
    **dict.fromkeys(("rm", "room", "unit", "apt", "apartment", "suite", "ste", "flat", "#"), _ROOM),
    **dict.fromkeys(("fl", "flr", "floor", "level", "lvl"), _FLOOR),
    **dict.fromkeys(("bldg", "bld", "building", "block", "blk", "tower", "twr"), _BUILDING),
    **dict.fromkeys(("no", "nr", "num", "number"), _NUMBER),
}
_STREET_TYPES = {
    **dict.fromkeys(("rd", "road", "lu"), "road"),                 # lu, jie, dadao: pinyin
    **dict.fromkeys(("st", "str", "street", "jie", "strasse"), "street"),
    **dict.fromkeys(("ave", "av", "avenue", "dadao", "allee"), "avenue"),
    **dict.fromkeys(("blvd", "boulevard"), "boulevard"),
    **dict.fromkeys(("ln", "lane", "gasse"), "lane"),
    **dict.fromkeys(("dr", "drive"), "drive"),
    **dict.fromkeys(("hwy", "highway"), "highway"),
    **dict.fromkeys(("way", "weg"), "way"),
    **dict.fromkeys(("sq", "square", "platz"), "square"),
    **dict.fromkeys(("pl", "place"), "place"),
    **dict.fromkeys(("ct", "court"), "court"),
    **dict.fromkeys(("pkwy", "parkway"), "parkway"),
}
# Pinyin street types that are also common syllables of split street names.
_PINYIN_TYPES = frozenset({"lu", "jie"})
_ABBREVIATIONS = {
    "ind": "industrial", "ctr": "center", "cntr": "center", "centre": "center", "intl": "international",
    "sci": "science",
}
# Words that say where a place is, at a level exports often omit: not part of an address's identity.
_NOISE = frozenset({
    "city", "shi", "district", "dist", "qu", "province", "prov", "sheng", "county", "china", "cn", "prc",
    "usa", "uk", "germany", "deutschland", "peoples", "republic", "united", "states", "america", "kingdom",
    "the", "of", "dept", "department", "zip", "postcode",
})
# Complex names (`Meilin Cyber Park`) end a street name read backwards from its type.
_PLACE_WORDS = frozenset({
    "park", "center", "plaza", "zone", "mall", "estate", "garden", "gardens", "mansion",
})
_STOP_WORDS = _NOISE | _PLACE_WORDS
# Markers of an address that is not the seller's own: care-of, returns desks, warehouses, forwarders.
_THIRD_PARTY = frozenset({
    "careof", "attn", "attention", "returns", "warehouse", "fulfilment", "fulfillment", "logistics",
    "forwarding", "forwarder", "freight",
})
_CARE_OF = re.compile(r"\bc\s*/\s*o\b|\bc\.o\.|\bcare\s+of\b")
_SLASH_FLOOR = re.compile(r"(\d)\s*/\s*f\b")                       # Hong Kong `12/F`
_JOINERS = re.compile(r"['’\-‐]")
_ZIP_PLUS_4 = re.compile(r"\d{5}-\d{4}")
# Postcodes that are not a plain digit run: UK (`SW1A 1AA`) and Canada (`K1A 0B1`), in two tokens.
# Digit runs of five or more are postcodes too.
_POSTCODE_OUTWARD = re.compile(r"[a-z]{1,2}\d[a-z\d]?|[a-z]\d[a-z]")
_POSTCODE_INWARD = re.compile(r"\d(?!st|nd|rd|th)[a-z]{2}|\d[a-z]\d")
_SEGMENT_END = ","
_SEGMENT_BREAKS = frozenset(",;|/\n")
_ADDRESS_TOKEN = re.compile(r"[^\W_]+(?:['’\-‐][^\W_]+)*|#|[,;|/\n]")
_GLUED_LABEL = re.compile(r"(rm|room|unit|apt|flat|ste|suite|no|bldg|blk|block|building|fl|floor)(\d+[a-z]?)")
_GLUED_FLOOR = re.compile(r"(\d+)f")
_GLUED_SUFFIXES = ("strasse", "str", "weg", "platz", "allee", "gasse")
_GLUED_STREET = re.compile(rf"([a-z]{{3,}}?)({'|'.join(_GLUED_SUFFIXES)})")   # Hauptstrasse, Musterstr
_UNIT_VALUE = re.compile(r"\d+[a-z]?|[a-z]|[a-z]\d+")
_HOUSE_NUMBER = re.compile(r"\d{1,5}[a-z]?")
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)")
_MAX_STREET_WORDS = 4
# Tokens that never make it into an address's rest: labels, street types, markers, noise.
_NOT_PLACE = frozenset(_LABELS) | frozenset(_STREET_TYPES) | _THIRD_PARTY | _NOISE | {_SEGMENT_END}


@dataclass(frozen=True, slots=True)
class _Address:
    """The parts of an address that identify a place; `rest` is what is left (complex, district, city)."""

    room: str = ""
    floor: str = ""
    building: str = ""
    number: str = ""
    street: str = ""
    street_type: str = ""
    rest: tuple[str, ...] = ()
    third_party: bool = False


def _split_glued(token: str, after_label: bool) -> list[str]:
    """`rm1203` -> room 1203, `12f` -> floor 12, `hauptstrasse` -> haupt strasse; abbreviations expanded."""
    if token.isalpha():
        if token.endswith(_GLUED_SUFFIXES) and (street := _GLUED_STREET.fullmatch(token)):
            return _split_glued(street.group(1), False) + [street.group(2)]
        return [_ABBREVIATIONS.get(token, token)]
    if token.isdigit():
        return [token]
    if label := _GLUED_LABEL.fullmatch(token):
        return [label.group(1), label.group(2)]
    if not after_label and (floor := _GLUED_FLOOR.fullmatch(token)):
        return [_FLOOR, floor.group(1)]
    return [token]


def _is_word(token: str) -> bool:
    return token.isalpha() and token not in _LABELS and token not in _STREET_TYPES


def _address_segments(text: str) -> list[list[str]]:
    """The tokens of each comma- (or semicolon-, slash-, line-) separated part of an address."""
    segments: list[list[str]] = []
    tokens: list[str] = []
    for written in _ADDRESS_TOKEN.findall(text):
        if written in _SEGMENT_BREAKS:
            if tokens:
                segments.append(_read_saints_and_prc(tokens))
                tokens = []
            continue
        for piece in (written,) if written.isalnum() or written == "#" else _unjoin(written):
            parts = _split_glued(piece, bool(tokens) and tokens[-1] in _LABELS)
            if tokens and tokens[-1] in _PINYIN_TYPES and _is_word(parts[0]):
                # `Jie Fang Rd`, `Lu Jiang St`: a syllable of the name, not a street type
                parts = _split_glued(tokens.pop() + parts[0], False) + parts[1:]
            tokens += parts
    if tokens:
        segments.append(_read_saints_and_prc(tokens))
    return segments


def _read_saints_and_prc(tokens: list[str]) -> list[str]:
    if "st" not in tokens and "p" not in tokens:
        return tokens
    for i, token in enumerate(tokens):
        # `12 St Johns Road`: an `St` that starts a name is Saint, not Street.
        if (token == "st" and i + 1 < len(tokens) and _is_word(tokens[i + 1])
                and not (i > 0 and _is_word(tokens[i - 1]))):
            tokens[i] = "saint"
        # `P.R. China`, `P.R.C.`
        elif token == "p" and tokens[i + 1:i + 2] == ["r"] and tokens[i + 2:i + 3] in (["c"], ["china"]):
            tokens[i:i + 3] = ["china"]
    return tokens


def _unjoin(written: str) -> list[str]:
    """Hyphens and apostrophes inside a name join (`Ke-yuan`, `Bao'an`); between numbers they separate."""
    if _ZIP_PLUS_4.fullmatch(written):
        return []
    pieces = _JOINERS.split(written)
    joined = [pieces[0]]
    for piece in pieces[1:]:
        if joined[-1][-1].isalpha() and piece[0].isalpha():
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined


def _unit_number(value: str) -> str:
    return (value.lstrip("0") or "0") if value.isdigit() else re.sub(r"^0+(?=\d)", "", value)


def _third_party(segments: list[list[str]]) -> tuple[bool, list[list[str]]]:
    found, kept = False, []
    for segment in segments:
        if _THIRD_PARTY.isdisjoint(segment):
            kept.append(segment)
            continue
        # `Logistics Road` is a street, not a marker.
        markers = {i for i, t in enumerate(segment)
                   if t in _THIRD_PARTY and not (i + 1 < len(segment) and segment[i + 1] in _STREET_TYPES)}
        if markers:
            found = True
            if len(segments) > 1 and not any(t in _STREET_TYPES or t in _LABELS for t in segment):
                continue    # the recipient line (`c/o SpeedWing Logistics`), not part of the place
        kept.append([t for i, t in enumerate(segment) if i not in markers])
    return found, kept


def _find_street(tokens: list[str]) -> tuple[int, int, int | None] | None:
    """(first name token, type token, number token or None) of the address's street: the first street
    with a number, else the first street. `tokens` starts and ends with a segment end."""
    first = None
    for i, token in enumerate(tokens):
        if token not in _STREET_TYPES:
            continue
        start = i
        while i - start < _MAX_STREET_WORDS and _is_word(word := tokens[start - 1]):
            if word in _STOP_WORDS:
                start -= start == i           # `City Road` is a name; `Futian District Keyuan Road` is not
                break
            start -= 1
        if start == i and _ORDINAL.fullmatch(tokens[i - 1]):
            start = i - 1                     # `5th Avenue`
        if start == i:
            continue                          # a street type without a name
        # A number right before the name is the street's, unless it is the value of `Room`, `Bldg`...
        if _HOUSE_NUMBER.fullmatch(tokens[start - 1]) and _LABELS.get(tokens[start - 2], _NUMBER) == _NUMBER:
            return start, i, start - 1
        if _HOUSE_NUMBER.fullmatch(tokens[i + 1]):
            return start, i, i + 1            # `Hauptstrasse 5`, `Keyuan Road 88`
        first = first or (start, i, None)
    return first


def _street_name(words: list[str]) -> str:
    # One word, so that `Wen San`, `Wensan` and `Wen-san` agree; kept apart where the joined word would
    # read as something else (`r d` -> `rd`).
    joined = "".join(words)
    return " ".join(words) if _split_glued(joined, False) != [joined] or not _is_word(joined) else joined


# Parsed again by every comparison (address_similarity): a warehouse's address meets hundreds of others.
@functools.lru_cache(maxsize=65536)
def _parse_address(raw: str) -> _Address:
    text = _fold(raw).replace("_", " ")      # so that `\b` in the patterns below sees word ends
    # Literal checks first: most addresses have neither, and the patterns are slow to scan.
    if "/" in text or "c.o." in text or "care" in text:
        text = _SLASH_FLOOR.sub(r"\1f", _CARE_OF.sub(" careof ", text))
    third_party, segments = _third_party(_address_segments(text))
    # One flat list with a segment end around every segment: a neighbour across a segment end is no
    # neighbour, and looking one token left or right never runs off the list.
    tokens = [_SEGMENT_END]
    for segment in segments:
        tokens += segment
        tokens.append(_SEGMENT_END)
    used = [False] * len(tokens)
    parts = dict.fromkeys((_ROOM, _FLOOR, _BUILDING, _NUMBER), "")
    street = street_type = ""
    if found := _find_street(tokens):
        start, end, number = found
        names = tokens[start:end]
        street = names[0] if _ORDINAL.fullmatch(names[0]) else _street_name(names)
        street_type = _STREET_TYPES[tokens[end]]
        used[start:end + 1] = [True] * (end + 1 - start)
        if number is not None:
            parts[_NUMBER] = _unit_number(tokens[number])
            used[number] = True
            used[number - 1] = used[number - 1] or tokens[number - 1] in _LABELS    # its `No.`
    for i, token in enumerate(tokens):
        label = _LABELS.get(token)
        if label is None or used[i]:
            continue
        used[i] = True                        # a label without a value says nothing
        value = ""
        if not used[i + 1] and (_HOUSE_NUMBER if label == _NUMBER else _UNIT_VALUE).fullmatch(tokens[i + 1]):
            value = tokens[i + 1]
            used[i + 1] = True
        elif label == _FLOOR and not used[i - 1]:
            if floor := _ORDINAL.fullmatch(tokens[i - 1]) or _HOUSE_NUMBER.fullmatch(tokens[i - 1]):
                value = floor.group(1) if floor.re is _ORDINAL else floor.group(0)
                used[i - 1] = True            # `3rd Floor`
        if value and not parts[label]:        # a second value for one part is dropped, not guessed at
            parts[label] = _unit_number(value)
    rest = set()
    for i, token in enumerate(tokens):
        if used[i] or token in _NOT_PLACE or (token.isdigit() and len(token) >= 5):     # postcode
            continue
        if not token.isalpha() and not token.isdigit() and _is_postcode(tokens, i):
            used[i + 1] = True
            continue
        if token[0].isdigit() and _HOUSE_NUMBER.fullmatch(token):
            if not parts[_ROOM]:
                parts[_ROOM] = _unit_number(token)    # `2512, Bldg.7, ...`: a bare number is the unit
            else:
                rest.add(_unit_number(token))
        else:
            rest.add(token)
    return _Address(parts[_ROOM], parts[_FLOOR], parts[_BUILDING], parts[_NUMBER], street, street_type,
                    tuple(sorted(rest)), third_party)


def _is_postcode(tokens: list[str], i: int) -> bool:
    return bool(_POSTCODE_OUTWARD.fullmatch(tokens[i]) and _POSTCODE_INWARD.fullmatch(tokens[i + 1]))


def _render_address(address: _Address) -> str:
    """The canonical text: labelled parts in a fixed order, then the rest sorted. Parses back to itself."""
    segments = [f"{label} {value}" for label, value in
                ((_ROOM, address.room), (_FLOOR, address.floor), (_BUILDING, address.building)) if value]
    # The number keeps its `no` label: a bare `12f` would read back as a floor.
    number = f"{_NUMBER} {address.number}" if address.number else ""
    if address.street or number:
        segments.append(" ".join(p for p in (number, address.street, address.street_type) if p))
    if address.rest:
        segments.append(" ".join(address.rest))
    return ", ".join(segments)


def _normalise_address(kind: str, raw: str, country: str | None) -> Normalised | None:
    address = _parse_address(raw)
    value = _render_address(address)
    if not value:
        return None
    keys = []
    if address.number:
        # Numbers are what exports get right; street names carry typos and spelling variants, so only
        # the first letter of the street goes into the key.
        building = f"{address.number}|{address.street[:1]}|{address.building}"
        if address.room:
            keys.append(("address/unit", f"{building}|{address.room}"))
        keys.append(("address/building", building))
    note = "third_party" if address.third_party else ""
    return Normalised(kind, value, bool(note), note, tuple(keys))


def address_similarity(a: Normalised, b: Normalised, *, cutoff: float | None = None) -> float:
    """[0, 1]: how likely two normalised addresses are the same place (same unit); 0.0 below `cutoff`.

    Numbers must agree (street number, building, floor, room); street names are compared fuzzily on
    their letters, to absorb typos; district, city and complex names count only when both sides name
    some and none agree, since exports omit them freely.
    """
    x, y = _parse_address(a.value), _parse_address(b.value)
    if _differ(x.number, y.number) or _differ(x.building, y.building):
        unit = 0.05                   # another building
    elif _differ(x.room, y.room) or _differ(x.floor, y.floor):
        unit = 0.15                   # the same building, another unit
    elif x.room and y.room:
        unit = 1.0
    elif x.room or y.room:
        unit = 0.5                    # one side does not say which unit
    elif (x.number and y.number) or (x.building and y.building):
        unit = 0.85                   # the same building, which is the unit where neither names a room
    else:
        unit = 0.3                    # no numbers at all: a street or an area, not a place
    score = unit * _street_agreement(x, y) * _locality_agreement(x, y)
    return 0.0 if cutoff is not None and score < cutoff else score


def _differ(p: str, q: str) -> bool:
    return bool(p and q and p != q)


def _street_agreement(x: _Address, y: _Address) -> float:
    if not (x.street and y.street):
        return 0.6 if x.street or y.street else 0.5
    ratio = fuzz.ratio(x.street.replace(" ", ""), y.street.replace(" ", "")) / 100
    if _differ(x.street_type, y.street_type):
        ratio *= 0.85
    # One typo in a short name still scores about 0.88; different names fall well below 0.6.
    return min(1.0, max(0.0, (ratio - 0.6) / 0.3))


def _locality_agreement(x: _Address, y: _Address) -> float:
    # Exports drop district, city and complex freely, so only a complete disagreement counts.
    words_x = {w for w in x.rest if w.isalpha()}
    words_y = {w for w in y.rest if w.isalpha()}
    return 0.6 if words_x and words_y and words_x.isdisjoint(words_y) else 1.0


_NORMALISERS: dict[str, Callable[[str, str, str | None], Normalised | None]] = {
    "ip": _normalise_ip,
    "mac": _normalise_mac,
    "device_id": _normalise_opaque_id,
    "browser_fp": _normalise_opaque_id,
    "phone": _normalise_phone,
    "email": _normalise_email,
    "address": _normalise_address,
    "payment_account": _normalise_payment,
    "tax_id": _normalise_tax_id,
    "person_name": _normalise_person_name,
}
