"""A plain (non-editable) install carries the guest recipe, profiles and catalog."""

import subprocess
import sys
import zipfile


def test_wheel_carries_data_and_finds_it(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("conformance/guest_images/recipe.toml", "conformance/guest_images/init",
                   "conformance/fixtures/profiles/virtio-blk.toml",
                   "conformance/fixtures/machines/q35.toml",
                   "conformance/catalog/clauses.json", "conformance/probe/commands.py",
                   "conformance/reports/templates/report.html.j2"):
        assert needed in names, needed
    # Installed on its own (outside the checkout), the package finds its data.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    code = ("import conformance.paths as p, conformance.profiles as pr; "
            "print(p.fixtures_dir()); print(len(pr.shipped_profiles()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout
    assert str(target) in out.splitlines()[0]
    assert int(out.splitlines()[1]) >= 11
