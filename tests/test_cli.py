"""The command's contract for bad input and machine-readable output (no guests)."""

import json

from conformance.cli import main


def test_unknown_clause_is_a_usage_error(capsys, tmp_path):
    code = main(["run", "--clause", "transport/pci/pci-device-discovry/1",
                 "--output", str(tmp_path / "out")])
    assert code == 2
    assert "did you mean transport/pci/pci-device-discovery/1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_malformed_profile_is_a_usage_error(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("virtio_id = 2\nvariants = ['pci']\n")
    assert main(["run", "--profile", str(bad)]) == 2
    assert "required field 'device' is missing" in capsys.readouterr().err


def test_unknown_transport_is_a_usage_error(capsys):
    assert main(["run", "--transport", "usb"]) == 2
    assert "unknown transport 'usb'" in capsys.readouterr().err


def test_missing_qemu_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTIO_CONFORMANCE_QEMU", "/nonexistent/qemu-system-x86_64")
    from conformance.machine.qemu import find_qemu

    find_qemu.cache_clear()
    try:
        code = main(["run", "--profile", "virtio-rng", "--transport", "pci",
                     "--output", str(tmp_path / "out")])
    finally:
        find_qemu.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert "apt-get install qemu-system-x86" in err and "Traceback" not in err


def test_clauses_json_is_alone_on_stdout(capsys):
    assert main(["clauses", "--area", "transport/mmio", "--format", "json"]) == 0
    out = capsys.readouterr().out
    entries = json.loads(out)
    assert entries and all(e["area"] == "transport/mmio" for e in entries)
    assert {"id", "revision", "section", "section_number", "level", "actor", "area", "status",
            "testable", "checks"} <= set(entries[0])


def test_coverage_counts_checked_clauses(capsys):
    assert main(["clauses", "--coverage", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["transport/pci"]["checked"] >= 4


def test_compare_of_missing_files_is_a_usage_error(capsys, tmp_path):
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2


def test_unusable_cache_dir_is_a_usage_error_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTIO_CONFORMANCE_CACHE", "/dev/null/cache")
    out = tmp_path / "out"
    assert main(["run", "--profile", "virtio-rng", "--transport", "mmio",
                 "--output", str(out)]) == 2
    assert "Set VIRTIO_CONFORMANCE_CACHE to a writable directory" in capsys.readouterr().err
    assert not out.exists()
