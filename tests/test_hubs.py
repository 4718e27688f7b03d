"""hubs.csv: the values shared by many stores, and what the scan did with each (ignored, shared
infrastructure, down-weighted), with their store counts."""

from __future__ import annotations

import csv
import math

import pytest

from assoc import Settings, read_bundle, scan
from assoc.report import read_scan_output
from assoc.report.tables import write_scan_outputs
from models import rules

SETTINGS = Settings(cache_dir=None, hub_cap=8)
OVER_CAP_IP = "81.2.69.142"  # nine stores: over the cap of eight
POOLED = "alipay: 6222 0000 1111 2222"  # three stores that share nothing else
PHONE, EMAIL = "+49 30 1234567", "owner@example.com"  # four stores share the phone, three of them the e-mail
OFFICE_PHONE = "+49 30 5550000"  # seven stores share it; M1 and M2 share an e-mail, M2 and M3 another


@pytest.fixture
def hubs(make_bundle, tmp_path) -> list[dict[str, str]]:
    """Scan a bundle with each kind of shared value, write the results, and read hubs.csv back."""
    groups = {"H": 9, "O": 4, "M": 7, "P": 3, "T": 2, "S": 3}
    stores = [{"store_id": f"{g}{n}", "country": "DE"} for g, size in groups.items() for n in range(1, size + 1)]
    signals = [{"store_id": f"H{n}", "kind": "ip", "value": OVER_CAP_IP, "seen_at": f"2024-0{n}-01T10:00:00Z"}
               for n in range(1, 10)]
    signals += [{"store_id": f"O{n}", "kind": "phone", "value": PHONE} for n in range(1, 5)]
    signals += [{"store_id": f"M{n}", "kind": "phone", "value": OFFICE_PHONE} for n in range(1, 8)]
    signals += [{"store_id": f"M{n}", "kind": "email", "value": f"desk{d}@example.com"}
                for n, d in ((1, 1), (2, 1), (2, 2), (3, 2))]
    signals += [{"store_id": f"O{n}", "kind": "email", "value": EMAIL} for n in range(1, 4)]
    signals += [{"store_id": f"P{n}", "kind": "payment_account", "value": POOLED} for n in range(1, 4)]
    signals += [{"store_id": f"P{n}", "kind": "phone", "value": f"+49 30 765432{n}"} for n in range(1, 4)]
    signals += [{"store_id": f"T{n}", "kind": "device_id", "value": "device-of-two"} for n in range(1, 3)]
    # one login session: three stores signed in from one IP within two hours
    signals += [{"store_id": f"S{n}", "kind": "ip", "value": "81.2.70.10", "seen_at": f"2025-03-01T1{n}:00:00Z"}
                for n in range(1, 4)]
    result = scan(read_bundle(make_bundle(stores, signals).csv_dir), SETTINGS)
    outdir = tmp_path / "out"
    write_scan_outputs(result, outdir, SETTINGS)
    with open(outdir / "hubs.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["kind", "value", "stores", "note"]
    # the report reads them back as written
    assert [(h.kind, h.value, h.stores, h.note) for h in read_scan_output(outdir).hubs] == [
        (r["kind"], r["value"], int(r["stores"]), r["note"]) for r in rows]
    return rows


def _row(rows: list[dict[str, str]], kind: str, value: str) -> dict[str, str]:
    found = [r for r in rows if (r["kind"], r["value"]) == (kind, value)]
    assert len(found) == 1, f"{kind} {value} not listed once in {rows}"
    return found[0]


def test_a_value_over_the_cap_is_listed_as_ignored_with_its_count(hubs):
    row = _row(hubs, "ip", OVER_CAP_IP)
    assert row["stores"] == "9"
    assert row["note"] == "ignored: over the cap of 8 stores"
    assert _row(hubs, "ip/24", "81.2.69")["note"].startswith("ignored:")  # its /24 too


def test_a_value_most_of_whose_holders_are_one_group_is_down_weighted_at_the_groups_support(hubs):
    row = _row(hubs, "phone", "+49301234567")
    assert row["stores"] == "4"
    # three of its six holder pairs also share the e-mail, which joins three of the four holders into one
    # group: the phone is taken for their operator's, and every holder pair loses bits at the group's support
    rarity = math.log2(4 - 1)
    lost = rarity + rules.UNCORROBORATED_SLOPE * (1 - 3 / 4) * (rarity - 1)
    assert row["note"] == (f"down-weighted: held by 4 stores, 3 of 6 holder pairs corroborated, "
                           f"loses {lost:.1f} bits to rarity and lack of corroboration; "
                           f"3 of its holders are corroborated into one group, most of them: every holder pair "
                           f"counts the value at that group's support")


def test_a_value_a_few_of_whose_holders_are_one_group_is_shared_infrastructure_outside_it(hubs):
    row = _row(hubs, "phone", "+49305550000")
    assert row["stores"] == "7"
    # two of its 21 holder pairs share an e-mail, which join three holders: shared infrastructure, except among them
    rarity = math.log2(7 - 1)
    lost_in_group = rarity + rules.UNCORROBORATED_SLOPE * (1 - 3 / 7) * (rarity - 1)
    assert row["note"] == (f"shared infrastructure: held by 7 stores, 2 of 21 holder pairs corroborated, "
                           f"counts at most {rules.INFRASTRUCTURE_WEIGHT:g} bits; "
                           f"3 holders are corroborated into one group, whose pairs lose {lost_in_group:.1f} bits")


def test_a_value_whose_holders_are_all_corroborated_is_one_operators_and_not_listed(hubs):
    assert not [r for r in hubs if r["kind"] == "email"]


def test_a_pooled_value_is_listed_as_shared_infrastructure(hubs):
    row = next(r for r in hubs if r["kind"] == "payment_account")
    assert row["stores"] == "3"
    assert row["note"] == (f"shared infrastructure: held by 3 stores, 0 of 3 holder pairs corroborated, "
                           f"counts at most {rules.INFRASTRUCTURE_WEIGHT:g} bits")


def test_values_two_stores_share_and_session_values_are_not_listed(hubs):
    assert not [r for r in hubs if r["kind"] == "device_id"]
    assert not [r for r in hubs if r["value"].startswith("81.2.70")]  # one session loses nothing to rarity
    assert {int(r["stores"]) for r in hubs} >= {3, 4, 7, 9} and min(int(r["stores"]) for r in hubs) >= 3


def test_ignored_values_come_first_then_shared_infrastructure_then_down_weighted(hubs):
    treatments = [r["note"].split(":")[0] for r in hubs]
    order = ["ignored", "shared infrastructure", "down-weighted"]
    assert set(treatments) == set(order)
    assert treatments == sorted(treatments, key=order.index)
    for treatment in order:
        rows = [r for r in hubs if r["note"].startswith(treatment + ":")]
        keys = [(-int(r["stores"]), r["kind"], r["value"]) for r in rows]
        assert keys == sorted(keys)  # most widely shared first
