"""Tests for assoc.normalise: real-world variants per kind, negatives, and properties (idempotence, no crash).

The literal variants are written the way exports write them (see /work/shared/samples); every kind also has
negatives: different identifiers must stay different, and placeholders must be dropped.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assoc.normalise import Normalised, address_similarity, normalise

KINDS = ["ip", "mac", "device_id", "browser_fp", "phone", "email", "address", "payment_account", "tax_id",
         "person_name", "shop_url"]


def value(kind: str, raw: str, country: str | None = None) -> str | None:
    result = normalise(kind, raw, country=country)
    return None if result is None else result.value


def assert_same(kind: str, variants: list[str], country: str | None = None) -> str:
    values = {raw: value(kind, raw, country) for raw in variants}
    assert len(set(values.values())) == 1, values
    assert None not in values.values()
    return next(iter(values.values()))


# ----------------------------------------------------------------------------------------------- ip

def test_ip_variants_of_one_address_agree():
    assert assert_same("ip", ["203.0.114.7", " 203.0.114.7 ", "203.0.114.7:5678", "203.000.114.007",
                              "::ffff:203.0.114.7", "[::ffff:203.0.114.7]:443"]) == "203.0.114.7"
    v6 = "240e:34d:9020:671b:c224:70cd:c3be:56b3"
    padded = "240E:034D:9020:671B:C224:70CD:C3BE:56B3"
    assert assert_same("ip", [v6, padded, f"[{v6}]:8080", f" {v6.upper()} "]) == v6
    assert value("ip", "240e:34d:9020:671b:0:0:c3be:56b3") == "240e:34d:9020:671b::c3be:56b3"
    assert value("ip", "fe80::1%eth0") == "fe80::1"


def test_ip_blocking_keys():
    assert normalise("ip", "121.178.202.198").keys == (("ip/24", "121.178.202"),)
    assert normalise("ip", "240e:34d:9020:671b::1").keys == (("ip/64", "240e:34d:9020:671b"),)
    assert normalise("ip", "2001:4860:0:0:1::8").keys == (("ip/64", "2001:4860:0:0"),)


@pytest.mark.parametrize("raw, note", [
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("172.31.255.1", "private"),
    ("192.168.1.20", "private"), ("fd12:3456::1", "private"), ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"), ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("169.254.10.10", "link_local"), ("fe80::abcd", "link_local"), ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"), ("192.0.2.44", "reserved"), ("198.51.100.1", "reserved"),
    ("2001:db8::7", "reserved"), ("240.1.1.1", "reserved"), ("255.255.255.255", "reserved"),
])
def test_ip_weak_ranges_are_flagged_without_keys(raw, note):
    result = normalise("ip", raw)
    assert (result.weak, result.note, result.keys) == (True, note, ())


def test_ip_public_addresses_are_not_weak():
    for raw in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "117.136.37.112", "2a00:1450:4001::200e"]:
        assert not normalise("ip", raw).weak, raw


@pytest.mark.parametrize("raw", ["", "   ", "0.0.0.0", "::", "256.1.1.1", "1.2.3", "not an ip", "1.2.3.4.5",
                                 "12345::abcd::1"])
def test_ip_garbage_and_unspecified_are_none(raw):
    assert normalise("ip", raw) is None


def test_ip_different_addresses_stay_different():
    assert value("ip", "1.2.3.4") != value("ip", "1.2.3.5")
    assert value("ip", "2001:db8::1") != value("ip", "2001:db8::2")


# ---------------------------------------------------------------------------------------------- mac

def test_mac_notations_agree():
    assert assert_same("mac", [
        "E4-B9-7A-80-7A-B6", "e4:b9:7a:80:7a:b6", "E4:B9:7A:80:7A:B6", "e4b9.7a80.7ab6", "E4B97A807AB6",
        "e4b97a807ab6", " e4 b9 7a 80 7a b6 ", "e4-b9:7a.80 7a-b6",
    ]) == "e4:b9:7a:80:7a:b6"
    assert value("mac", "0:1c:42:b:7:ff") == "00:1c:42:0b:07:ff"


@pytest.mark.parametrize("raw", [
    "00-00-00-00-00-00", "00:00:00:00:00:00", "FF:FF:FF:FF:FF:FF", "02:00:00:00:00:00", "e4:b9:7a:80:7a",
    "e4:b9:7a:80:7a:b6:01", "g4:b9:7a:80:7a:b6", "unknown", "",
])
def test_mac_placeholders_and_garbage_are_none(raw):
    assert normalise("mac", raw) is None


@pytest.mark.parametrize("raw, note", [
    ("02:11:22:33:44:55", "locally_administered"), ("da:a1:19:00:00:01", "locally_administered"),
    ("3e:22:fb:1a:2b:3c", "locally_administered"), ("01:00:5e:00:00:fb", "multicast"),
    ("3c:22:fb:1a:2b:3c", ""), ("00:e0:4c:40:1f:46", ""),
])
def test_mac_randomised_and_multicast_are_weak(raw, note):
    result = normalise("mac", raw)
    assert (result.weak, result.note) == (bool(note), note)


# --------------------------------------------------------------------------------- device ids

@pytest.mark.parametrize("kind", ["device_id", "browser_fp"])
def test_hex_ids_compare_case_and_layout_insensitively(kind):
    assert_same(kind, ["61fe7924-ce58-4902-a90e-5f94df497eac", "61FE7924-CE58-4902-A90E-5F94DF497EAC",
                       "{61fe7924-ce58-4902-a90e-5f94df497eac}", "61fe7924ce584902a90e5f94df497eac",
                       "urn:uuid:61fe7924-ce58-4902-a90e-5f94df497eac"])
    assert value(kind, "61fe7924-ce58-4902-a90e-5f94df497eac") != \
        value(kind, "61fe7924-ce58-4902-a90e-5f94df497ead")


@pytest.mark.parametrize("kind", ["device_id", "browser_fp"])
@pytest.mark.parametrize("raw", [
    "00000000-0000-0000-0000-000000000000", "0" * 32, "ffffffff", "unknown", "NULL", "None", "n/a",
    "undefined", "-", "0", "  ", "(null)",
])
def test_device_placeholders_are_none(kind, raw):
    assert normalise(kind, raw) is None


def test_opaque_ids_keep_their_case():
    # Base64-like ids are case-sensitive: only hex ids are folded.
    assert value("device_id", " AbCdEfGhIjK+/= ") == "AbCdEfGhIjK+/="
    assert value("device_id", "AbCdEfGhIjK") != value("device_id", "abcdefghijk")


# -------------------------------------------------------------------------------------------- phone

def test_chinese_mobile_variants_agree():
    assert assert_same("phone", [
        "+86 138 0013 8000", "13800138000", "138-0013-8000", "0086 13800138000", "0086-13800138000",
        "+8613800138000", "+86-138-0013-8000", "(+86) 13800138000", "8613800138000", "138 0013 8000",
        "+86 13800138000", "tel:+86-138-0013-8000",
    ], country="CN") == "+8613800138000"


def test_country_code_without_plus():
    assert value("phone", "8613599133116", "CN") == "+8613599133116"
    assert value("phone", "8613599133116", "GB") == "+8613599133116"


def test_hong_kong_variants_agree():
    assert assert_same("phone", ["+852 9032 9030", "852-90329030", "90329030", "(852) 9032-9030",
                                 "00852 90329030", "+85290329030"], country="HK") == "+85290329030"


def test_international_numbers_ignore_the_store_country():
    for country in ["CN", "US", "HK", None, "", "XX"]:
        assert value("phone", "+86 138 0013 8000", country) == "+8613800138000", country


def test_extensions_and_national_formats():
    assert value("phone", "+1 650-253-0000 ext. 12", "US") == "+16502530000"
    assert value("phone", "(650) 253-0000", "US") == "+16502530000"
    assert value("phone", "020 7946 0958", "GB") == "+442079460958"


def test_phone_fallback_keeps_digits_and_is_stable():
    # A Chinese mobile listed by a Hong Kong store is not a valid HK number: its digits are kept, and
    # not read as a US number (+1 786...).
    assert value("phone", "178-6938-4255", "HK") == "17869384255"
    assert value("phone", "13800138000", None) == "13800138000"
    assert value("phone", "+999 1234 5678") == "+99912345678"
    assert value("phone", "00999 1234 5678") == "+99912345678"


@pytest.mark.parametrize("raw", ["", "12345", "n/a", "+86", "000000", "phone", "---"])
def test_phone_without_information_is_none(raw):
    assert normalise("phone", raw, country="CN") is None


def test_different_phones_stay_different():
    assert value("phone", "13800138000", "CN") != value("phone", "13800138001", "CN")
    assert value("phone", "+852 9032 9030", "HK") != value("phone", "+86 9032 9030", "CN")


# -------------------------------------------------------------------------------------------- email

def test_gmail_ignores_dots_tags_case_and_googlemail():
    assert assert_same("email", [
        "lyujun1986@gmail.com", "Lyujun1986+ali@gmail.com", "l.yujun.1986+store2@Gmail.com",
        "lyujun1986@googlemail.com", "LYUJUN1986@GMAIL.COM", " mailto:lyujun1986@gmail.com ",
        "Lyu Jun <lyujun1986+shop@gmail.com>",
    ]) == "lyujun1986@gmail.com"


def test_plus_tags_only_where_the_provider_documents_them():
    assert value("email", "homesale565+shop@hotmail.com") == "homesale565@hotmail.com"
    assert value("email", "Jingxiao.chen9951+shop@outlook.com") == "jingxiao.chen9951@outlook.com"
    assert value("email", "me+x@icloud.com") == "me@icloud.com"
    assert value("email", "shop+cn@163.com") == "shop+cn@163.com"
    assert value("email", "kitchen-trade@yahoo.com") == "kitchen-trade@yahoo.com"


def test_dots_matter_outside_gmail():
    assert value("email", "wenyong.yang95@163.com") != value("email", "wenyongyang95@163.com")
    assert value("email", "kai.chen@outlook.com") != value("email", "kaichen@outlook.com")


@pytest.mark.parametrize("raw", ["", "not-an-email", "@gmail.com", "user@", "user@localhost", "a b@@c.com",
                                 "+tag@gmail.com", "....@gmail.com", "user@-bad-.com"])
def test_invalid_emails_are_none(raw):
    assert normalise("email", raw) is None


# ------------------------------------------------------------------------------------------ address

SAME_UNIT = [
    "Rm 305 Bldg 7, No.63 Meilin Street, Futian Dist., Shenzhen City 518073, P.R. China",
    "Bldg.7, Rm 305, 63 Mei Lin Street, Futian, Shenzhen",
    "305, Block 7, Meilin Cyber Park, 63 Mei-lin St., Shenzhen Shi 518073",
    "No. 63 Meilin St., Meilin Cyber Park, 305, Blk 7, Futian District, Shenzhen Shi",
    "ROOM 305 BUILDING 7 NO. 63 MEILIN ST FUTIAN SHENZHEN CITY 518073",
    "Rm 305 Building 7, No. 63 Meiin St, Futian Dist., Shenzhen 518073 China",        # typo
    "#305, Blk 7, 63 Meilin Street, Futian District, Shenzhen, GD",
]


def test_address_variants_share_the_unit_key_and_score_high():
    normalised = [normalise("address", raw) for raw in SAME_UNIT]
    assert {dict(n.keys)["address/unit"] for n in normalised} == {"63|m|7|305"}
    for n in normalised[1:]:
        assert address_similarity(normalised[0], n) >= 0.85, n.value


def test_address_canonical_value_ignores_order_case_abbreviations_and_postcode():
    assert assert_same("address", [
        "Rm 305 Bldg 7, No.63 Meilin Street, Futian Dist., Shenzhen City 518073, P.R. China",
        "BUILDING 7, ROOM 305, 63 MEI-LIN ST., FUTIAN DISTRICT, SHENZHEN SHI",
        "Futian, Shenzhen, No. 63 Mei Lin Rd. Rm.305 Blk 7".replace("Rd.", "Street"),
    ]) == "room 305, building 7, no 63 meilin street, futian shenzhen"
    assert value("address", "102, Xinan Cyber Park, 147 Songshan Dadao, Humen") == \
        value("address", "Rm.102, Xinan Cyber Park, No.147 Song-Shan Avenue, Humen Dist.")


def test_pinyin_syllables_that_look_like_street_types():
    assert value("address", "Bldg F, #909, No.225 Jie Fang Rd, Guangzhou") == \
        value("address", "Room 909, Bldg F, No.225 Jiefang Road, Guangzhou")
    assert "lujiang street" in value("address", "Bldg.8 Room 1608, 324 Lu Jiang Street, Jimei, Xiamen")
    assert "keyuan road" in value("address", "88 Keyuan Lu, Nanshan")


def test_same_building_other_room_is_not_the_same_unit():
    a = normalise("address", "Rm 305, Bldg 7, 63 Meilin Street, Shenzhen")
    b = normalise("address", "Unit 2314, Block 7, No. 63 Mei Lin St., Futian, Shenzhen")
    assert dict(a.keys)["address/building"] == dict(b.keys)["address/building"]
    assert dict(a.keys)["address/unit"] != dict(b.keys)["address/unit"]
    assert address_similarity(a, b) <= 0.2


def test_different_places_score_low():
    base = normalise("address", "Rm 305, Bldg 7, 63 Meilin Street, Shenzhen")
    for other in ["Rm 305, Bldg 7, 65 Meilin Street, Shenzhen",          # another street number
                  "Rm 305, Bldg 8, 63 Meilin Street, Shenzhen",          # another building
                  "Rm 305, Bldg 7, 63 Keyuan Road, Shenzhen",            # another street
                  "Rm 305, Bldg 7, 63 Meilin Street, Hangzhou Xihu"]:    # another city
        assert address_similarity(base, normalise("address", other)) < 0.75, other


def test_street_typos_and_omitted_locality_still_match():
    a = normalise("address", "Attn: Returns, Rm.10, Building G, 124 Moagnshan Avenue, Xiaoshan, Hangzhou")
    b = normalise("address", "Rm 10, Bldg G, Gudun Business Center, No.124 Mo-gan-shan Dadao, Hangzhou")
    assert address_similarity(a, b) >= 0.85
    assert address_similarity(a, b) == address_similarity(b, a)
    assert address_similarity(a, b, cutoff=0.99) == 0.0


def test_room_written_on_one_side_only_is_a_partial_match():
    a = normalise("address", "Rm 305, Bldg 7, 63 Meilin Street, Shenzhen")
    b = normalise("address", "Bldg 7, 63 Meilin Street, Shenzhen")
    assert 0.3 <= address_similarity(a, b) <= 0.7


@pytest.mark.parametrize("raw", [
    "c/o 4PX-style Fulfilment, Rm 10, Bldg G, Gudun Business Center, No.124 Moganshan Ave, Hangzhou 310047",
    "Yunda Overseas Returns Dept, Bldg G, No.325 Keyuan Street, Nanshan Dist., Shenzhen City 518043",
    "Attn: Returns, Unit 10, Bldg G, 124 Mo Gan Shan Ave, Xiaoshan, Hangzhou",
    "SpeedWing Logistics Returns Dept Blk G 325 Ke-yuan St. Shenzhen Shi 518043 CN",
    "GlobalHop Warehouse, 15 Chouzhou Industrial Rd, Yiwu",
    "Care of FastLane Forwarding, 12 Main Street, Springfield",
])
def test_third_party_addresses_are_weak_and_markers_dropped(raw):
    result = normalise("address", raw)
    assert (result.weak, result.note) == (True, "third_party")
    assert not {"careof", "attn", "returns", "logistics", "warehouse", "fulfilment", "forwarding"} & \
        set(result.value.replace(",", " ").split())


def test_recipient_line_is_not_part_of_the_place():
    assert value("address", "c/o Yunda Overseas, Building G, 325 Ke Yuan Street, Nanshan, Shenzhen") == \
        value("address", "Building G, 325 Keyuan Street, Nanshan, Shenzhen")


def test_a_street_named_logistics_is_not_a_marker():
    assert not normalise("address", "88 Logistics Road, Tianjin").weak


def test_other_countries_address_forms():
    assert value("address", "Flat 3, 12 Baker Street, London NW1 6XE, United Kingdom") == \
        "room 3, no 12 baker street, london"
    assert value("address", "Musterstraße 12, 10115 Berlin") == value("address", "Musterstr. 12, Berlin")
    assert value("address", "12 St Johns Road, London") == "no 12 saintjohns road, london"
    assert value("address", "Flat A, 12/F, Block 3, 88 Nathan Road, Kowloon") == \
        "room a, floor 12, building 3, no 88 nathan road, kowloon"
    assert value("address", "3rd Floor, 5th Avenue 100, New York") == "floor 3, no 100 5th avenue, new york"
    assert value("address", "1600 Amphitheatre Pkwy, Mountain View, CA 94043-1351, USA") == \
        "no 1600 amphitheatre parkway, ca mountain view"


@pytest.mark.parametrize("raw", ["", "   ", ", , ;", "China", "P.R. China 518000", "Room", "c/o"])
def test_addresses_without_information_are_none(raw):
    assert normalise("address", raw) is None


# ---------------------------------------------------------------------------------- payment_account

def test_bank_card_layouts_and_tags_agree():
    assert assert_same("payment_account", [
        "6222 0212 3456 7890 123", "6222-0212-3456-7890-123", "6222021234567890123",
        "bank:6222021234567890123", "Bank 6222 0212 3456 7890 123", "unionpay:6222021234567890123",
        "CN 6222 0212 3456 7890 123", "6222.0212.3456.7890.123",
    ]) == "6222021234567890123"


def test_wallet_email_agrees_with_the_bare_email():
    assert assert_same("payment_account", [
        "alipay:owner@example.com", "Alipay: Owner@Example.com", "ALIPAY owner@example.com",
        "alipay-owner@example.com", "owner@example.com (alipay)", "owner@example.com",
        "payoneer:owner@example.com", "PAYONEER:owner@example.com", "Payoneer owner@example.com",
        "payoneer-owner@example.com",
    ]) == "owner@example.com"
    assert value("payment_account", "alipay:o.wner+x@googlemail.com") == "owner@gmail.com"


def test_wallet_phone_variants_agree_whatever_the_store_country():
    variants = ["alipay:15283737111", "Alipay: 152 8373 7111", "ALIPAY +86 15283737111",
                "alipay-152-8373-7111", "152-8373-7111 (alipay)", "+86 15283737111",
                "alipay:0086 152 8373 7111"]
    for country in ["CN", "HK", "US", None]:
        assert assert_same("payment_account", variants, country) == "15283737111"


def test_provider_tags_glued_to_numbers():
    pingpong = ["pingpong:PP783838392831", "PingPong PP783838392831", "pingpong-783838392831",
                "PINGPONG:PP783838392831"]
    worldfirst = ["worldfirst:493638778", "WorldFirst 493-638-778", "WF-493638778", "worldfirst:493-638-778"]
    lianlian = ["lianlian:889859120707", "LianLian Pay 889859120707", "LL-889859120707",
                "lianlianpay:889859120707"]
    assert assert_same("payment_account", pingpong) == "783838392831"
    assert assert_same("payment_account", worldfirst) == "493638778"
    assert assert_same("payment_account", lianlian) == "889859120707"


def test_masked_accounts_are_weak():
    result = normalise("payment_account", "6222 **** **** 1234")
    assert (result.value, result.weak, result.note) == ("6222********1234", True, "masked")


@pytest.mark.parametrize("raw", ["", "bank:", "n/a", "0000 0000 0000 0000", "alipay: none", "123", "****"])
def test_payment_placeholders_are_none(raw):
    assert normalise("payment_account", raw) is None


def test_different_accounts_stay_different():
    assert value("payment_account", "6222 0212 3456 7890 123") != \
        value("payment_account", "6222 0212 3456 7890 124")
    assert value("payment_account", "alipay:a.b@163.com") != value("payment_account", "alipay:ab@163.com")


# ------------------------------------------------------------------------------------------- tax_id

def test_tax_ids_ignore_case_and_separators():
    variants = ["91440300MA5FXXXX1L", "91440300ma5fxxxx1l", " 9144 0300-MA5F.XXXX/1L "]
    assert assert_same("tax_id", variants) == "91440300MA5FXXXX1L"


def test_vat_country_prefix_is_dropped_only_before_digits():
    assert assert_same("tax_id", ["DE123456789", "de 123 456 789", "123456789"]) == "123456789"
    assert value("tax_id", "CHE-123.456.789") == "123456789"
    assert value("tax_id", "ATU12345678") == "ATU12345678"
    assert value("tax_id", "ESX1234567X") == "ESX1234567X"


@pytest.mark.parametrize("raw", ["", "000000000000000000", "N/A", "none", "--", "1111111", "...."])
def test_tax_placeholders_are_none(raw):
    assert normalise("tax_id", raw) is None


# -------------------------------------------------------------------------------------- person_name

def test_name_order_case_and_split_given_names_agree():
    assert assert_same("person_name", [
        "Huang Haoshan", "HUANG HAO-SHAN", "Haoshan Huang", "Hao Shan Huang", "Huang Hao Shan",
        "huang haoshan", "Haoshan HUANG", "Hao-shan Huang", "HUANG Hao Shan", "Hao Shan HUANG",
        "Huang, Hao Shan", "  Huang  Haoshan ",
    ]) == "haoshan huang"
    assert assert_same("person_name", ["Li Yu Jun", "LI YUJUN", "Yujun Li", "Li Yujun"]) == "li yujun"
    assert assert_same("person_name", ["Tai Man Chan", "CHAN Tai Man", "Chan Taiman"]) == "chan taiman"
    assert value("person_name", "José  Müller") == "jose muller"


def test_different_people_stay_different():
    # Sorting all letters or all syllables would merge these.
    assert value("person_name", "Wang Lin") != value("person_name", "Wan Ling")
    assert value("person_name", "Li Weiming") != value("person_name", "Wei Liming")
    assert value("person_name", "Zhang Wei") != value("person_name", "Zhang Wen")


def test_names_in_chinese_script_drop_spaces_and_keep_order():
    assert assert_same("person_name", ["张伟", "张 伟", " 张伟 "]) == "张伟"
    assert value("person_name", "张伟") != value("person_name", "伟张")


@pytest.mark.parametrize("raw", ["", "N/A", "unknown", "-", "null", "x"])
def test_name_placeholders_are_none(raw):
    assert normalise("person_name", raw) is None


# ------------------------------------------------------------------------------------- other kinds

def test_unknown_kinds_compare_exactly_apart_from_whitespace():
    result = normalise(" Shop_URL ", "  https://Example.com/Shop  ")
    assert result == Normalised("shop_url", "https://Example.com/Shop")
    assert normalise("shop_url", "   ") is None
    assert normalise("IP", "8.8.8.8").kind == "ip"


# ---------------------------------------------------------------------------------------- properties

def _formatted_mac(octets: bytes, style: int) -> str:
    hexes = [f"{o:02x}" for o in octets]
    cisco = ".".join("".join(hexes[i:i + 2]) for i in (0, 2, 4))
    return [":".join(hexes), "-".join(hexes).upper(), "".join(hexes), cisco][style]


DIGITS = st.text("0123456789", min_size=1, max_size=15)
WORDS = st.sampled_from([
    "Keyuan", "Ke Yuan", "Mo-gan-shan", "Meilin", "Futian", "Shenzhen", "Shi", "City", "District", "Park",
    "Cyber", "Plaza", "St", "St.", "Rd", "Road", "Ave", "Dadao", "Lu", "Jie", "Fang", "Industrial", "Ind.",
    "No.", "Rm", "Room", "#", "Unit", "Bldg", "Blk", "Floor", "12/F", "3rd", "c/o", "Attn:", "Returns",
    "Warehouse", "Logistics", "P.R. China", "CN", "518073", "NW1 6XE", "Musterstraße", ",", ",", "A", "G",
    "Saint", "Bao'an",
])
EMAIL = st.builds(lambda local, tag, domain: f"{local}{tag}@{domain}",
                  st.text("abcXYZ019._-", min_size=1, max_size=12), st.sampled_from(["", "+shop", "+a+b"]),
                  st.sampled_from(["gmail.com", "GoogleMail.com", "outlook.com", "163.com", "qq.com", "x.y"]))
PROVIDERS = st.sampled_from(["", "alipay:", "Alipay: ", "bank:", "PP", "wise-", "(alipay) ", "LianLian Pay ",
                             "CN "])
NAME_PARTS = st.sampled_from(["Huang", "HUANG", "Hao", "shan", "Hao-shan", "Li", "Wang", "Chan", "José", "张",
                              ",", "O'Brien"])
REALISTIC = {
    "ip": st.one_of(st.ip_addresses().map(str), st.ip_addresses(v=4).map(lambda ip: f"{ip}:8080"),
                    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]:443")),
    "mac": st.builds(_formatted_mac, st.binary(min_size=6, max_size=6), st.integers(0, 3)),
    "device_id": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: "{" + str(u).upper() + "}"),
                           st.text("abcdefABCDEF0123456789-", max_size=40)),
    "browser_fp": st.one_of(st.text("0123456789abcdef", max_size=40), st.text(max_size=40)),
    "phone": st.one_of(DIGITS, DIGITS.map(lambda d: "+" + d), DIGITS.map(lambda d: "00" + d),
                       st.lists(DIGITS, max_size=4).map(lambda ds: "(+86) " + "-".join(ds) + " ext. 12")),
    "email": EMAIL,
    "address": st.lists(st.one_of(WORDS, st.integers(0, 99999).map(str)), max_size=16).map(" ".join),
    "payment_account": st.builds(lambda provider, account: provider + account, PROVIDERS,
                                 st.one_of(DIGITS, DIGITS.map(lambda d: "+86 " + d), st.emails(), EMAIL,
                                           st.text("0123456789 -*.", max_size=24))),
    "tax_id": st.text("0123456789ABCDEFGHXYZ de-./", max_size=24),
    "person_name": st.lists(NAME_PARTS, max_size=5).map(" ".join),
    "shop_url": st.text(max_size=30),
}


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_normalising_a_normalised_value_changes_nothing(kind, data):
    raw = data.draw(st.one_of(REALISTIC[kind], st.text(max_size=40)), label="raw")
    country = data.draw(st.sampled_from([None, "", "CN", "HK", "US", "GB", "XX"]), label="country")
    result = normalise(kind, raw, country=country)
    if result is not None:
        assert result.value
        again = normalise(kind, result.value, country=country)
        assert again is not None and again.value == result.value


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=200, deadline=None)
@given(raw=st.text(), country=st.one_of(st.none(), st.text(max_size=3)))
def test_arbitrary_text_never_raises(kind, raw, country):
    result = normalise(kind, raw, country=country)
    assert result is None or (isinstance(result, Normalised) and result.value and result.kind == kind)


@settings(max_examples=200, deadline=None)
@given(REALISTIC["address"], REALISTIC["address"])
def test_address_similarity_is_a_symmetric_probability(raw_a, raw_b):
    a, b = normalise("address", raw_a), normalise("address", raw_b)
    if a is not None and b is not None:
        score = address_similarity(a, b)
        assert 0.0 <= score <= 1.0
        assert score == address_similarity(b, a)


def test_phone_national_key_joins_a_mobile_written_nationally_in_another_country():
    mainland = normalise("phone", "+86 133 8017 6266", country="CN")
    on_hk_store = normalise("phone", "13380176266", country="HK")
    assert mainland.value != on_hk_store.value
    assert dict(mainland.keys)["phone/national"] == dict(on_hk_store.keys)["phone/national"] == "13380176266"
    other = normalise("phone", "13380176267", country="HK")
    assert dict(other.keys)["phone/national"] != dict(mainland.keys)["phone/national"]
