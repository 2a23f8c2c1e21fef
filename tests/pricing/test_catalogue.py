"""The bundled price catalogue, user overrides, and the errors bad files and names get."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.pricing.catalogue import (
    CATALOGUE_COLUMNS,
    PriceFileError,
    UnknownInstanceError,
    bundled_catalogue_path,
    load_catalogue,
    price_override,
    read_price_file,
    resolve_price,
)

ISSUE_PRICES = {
    "ml.c5.xlarge": 0.204, "ml.c5.2xlarge": 0.408, "ml.c5.4xlarge": 0.816, "ml.c7i.xlarge": 0.214,
    "ml.m5.xlarge": 0.23, "ml.g4dn.xlarge": 0.7364, "ml.g4dn.2xlarge": 0.94, "ml.g5.xlarge": 1.4084,
    "ml.g5.2xlarge": 1.515, "ml.inf2.xlarge": 0.99, "ml.p3.2xlarge": 3.825, "c5.xlarge": 0.17,
    "c6i.xlarge": 0.17, "c7i.xlarge": 0.1785, "c7g.xlarge": 0.145, "m5.xlarge": 0.192, "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006, "g6.xlarge": 0.8048, "inf1.xlarge": 0.228, "inf2.xlarge": 0.7582,
    "p3.2xlarge": 3.06, "n2-standard-4": 0.194236, "g2-standard-4": 0.706832, "a2-highgpu-1g": 3.673385,
    "Standard_D4s_v5": 0.192,
    "c7i.large": 0.08925,
}  # fmt: skip
# Current 2-vCPU families of each CPU the shared machines have had, on-demand us-east-1 (Price List API).
TWO_VCPU_FAMILIES = {
    "c6a.large": ("amd", "milan", 0.0765), "c7a.large": ("amd", "genoa", 0.10264),
    "c8a.large": ("amd", "turin", 0.10777), "c7i.large": ("intel", "sapphire-rapids", 0.08925),
    "i7ie.large": ("intel", "emerald-rapids", 0.2599), "c8i.large": ("intel", "granite-rapids", 0.09371),
    "c7g.large": ("aws", "neoverse-v1", 0.0725), "c8g.large": ("aws", "neoverse-v2", 0.07976),
}  # fmt: skip
# The columns of a user price file written before cpu_vendor / cpu_family existed: still valid.
HEADER = "provider,service,instance,region,usd_per_hour,vcpus,memory_gib,accelerator,source,date"


def test_bundled_catalogue_keeps_the_issue_figures_and_names_every_rows_cpu_and_source():
    catalogue = load_catalogue()
    prices = {e.instance: e.usd_per_hour for e in catalogue.entries}
    assert {name: prices[name] for name in ISSUE_PRICES} == ISSUE_PRICES
    assert catalogue.versions and catalogue.versions[0].startswith("prices.csv 2026")
    for entry in catalogue.entries:
        assert entry.vcpus and entry.memory_gib and entry.source.startswith("https://") and entry.date
        assert entry.cpu_vendor and entry.cpu_families, entry.instance
    for name, (vendor, family, price) in TWO_VCPU_FAMILIES.items():
        entry = catalogue.lookup(name)
        assert (entry.cpu_vendor, entry.cpu_family, entry.usd_per_hour, entry.vcpus) == (
            vendor,
            family,
            price,
            2,
        )
    assert catalogue.lookup("c5.xlarge").cpu_families == {"skylake", "cascade-lake"}
    assert set(CATALOGUE_COLUMNS) >= {"cpu_vendor", "cpu_family"}
    assert catalogue.lookup("ml.g4dn.xlarge").accelerator.startswith("1x NVIDIA T4")
    assert catalogue.lookup("a2-highgpu-1g").vcpus == 12
    assert catalogue.lookup("standard_d4s_v5").region == "eastus"  # case-insensitive


def test_no_sagemaker_inf1_price_until_one_is_verified():
    with pytest.raises(UnknownInstanceError) as err:
        load_catalogue().lookup("ml.inf1.xlarge")
    assert "inf1.xlarge" in err.value.suggestions


def test_unknown_instance_lists_close_matches():
    with pytest.raises(UnknownInstanceError) as err:
        resolve_price("ml.c5.xlarg")
    assert err.value.suggestions[0] == "ml.c5.xlarge"
    assert "close matches: ml.c5.xlarge" in str(err.value)
    with pytest.raises(UnknownInstanceError, match="deploybench prices"):
        resolve_price("quantum-9000")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-prices.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_price_names_file_and_line(tmp_path: Path):
    path = _write(
        tmp_path,
        f"# my prices\n{HEADER}\n"
        "aws,ec2,c5.large,us-east-1,0.085,2,4,,mine,2026-11-01\n"
        "aws,ec2,c5.9xlarge,us-east-1,1.53x,36,72,,mine,2026-11-01\n",
    )
    with pytest.raises(PriceFileError, match=rf"{path}:4: usd_per_hour '1.53x' is not a positive number"):
        read_price_file(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("aws,ec2,c5.large,us-east-1,-1,2,4,,mine,2026-11-01", "usd_per_hour '-1' is not a positive number"),
        ("aws,ec2,c5.large,us-east-1,0.085,2,4,,mine", "expected 10 fields, found 9"),
        ("aws,ec2,,us-east-1,0.085,2,4,,mine,2026-11-01", "instance is empty"),
        ("aws,ec2,c5.large,us-east-1,0.085,two,4,,mine,2026-11-01", "vcpus 'two'"),
        ("aws,ec2,c5.large,us-east-1,0.085,2,4,,mine,01/11/2026", "date '01/11/2026' is not YYYY-MM-DD"),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, line: str, message: str):
    path = _write(tmp_path, f"{HEADER}\n\n{line}\n")
    with pytest.raises(PriceFileError) as err:
        read_price_file(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_bad_header_names_the_columns(tmp_path: Path):
    path = _write(tmp_path, "provider,instance,usd_per_hr\naws,x,1\n")
    with pytest.raises(
        PriceFileError, match=r":1: bad header: unknown column\(s\) usd_per_hr; missing column"
    ):
        read_price_file(path)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PriceFileError, match="cannot read price file"):
        load_catalogue([tmp_path / "nope.csv"])


def test_user_file_overrides_and_adds_entries(tmp_path: Path):
    path = _write(
        tmp_path,
        "provider,instance,region,usd_per_hour\n"
        "aws,ml.c5.xlarge,us-east-1,0.15\n"  # negotiated discount
        "onprem,rack-a,,0.05\n",
    )
    catalogue = load_catalogue([path])
    assert catalogue.lookup("ml.c5.xlarge").usd_per_hour == 0.15
    assert catalogue.lookup("rack-a").source == str(path)
    assert len(catalogue.entries) == len(load_catalogue().entries) + 1
    assert catalogue.files == [str(bundled_catalogue_path()), str(path)]
    assert price_override("rack-a", None, [path]).usd_per_hour == 0.05


def test_price_override_prefers_the_explicit_price():
    assert price_override("ml.c5.xlarge", 0.3286).usd_per_hour == 0.3286
    assert price_override("ml.c5.xlarge").usd_per_hour == 0.204
    assert price_override() is None
    with pytest.raises(ValueError, match="> 0"):
        price_override(price_per_hour=0)


def test_search_filters_on_provider_instance_and_accelerator():
    catalogue = load_catalogue()
    assert {e.instance for e in catalogue.search("inferentia")} == {
        "inf1.xlarge",
        "inf2.xlarge",
        "ml.inf2.xlarge",
    }
    assert {e.provider for e in catalogue.search("gcp")} == {"gcp"}
    assert len(catalogue.search(None)) == len(catalogue.entries)
    assert {e.instance for e in catalogue.search("milan") if e.vcpus == 2} == {
        "c6a.large",
        "m6a.large",
        "r6a.large",
    }
