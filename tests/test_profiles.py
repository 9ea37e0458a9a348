"""Device profiles: every shipped one loads; a malformed one gets one clear error."""

import pytest

from conformance.errors import ConfigError
from conformance.profiles import load_profile, resolve_profile, shipped_profiles
from conformance.transports import ALL_VARIANTS


def test_every_shipped_profile_loads():
    profiles = shipped_profiles()
    names = {p.name for p in profiles}
    assert {"virtio-net", "virtio-blk", "virtio-rng", "virtio-console", "virtio-balloon",
            "virtio-scsi", "virtio-9p", "virtio-input", "vhost-user-blk", "vhost-user-fs",
            "vhost-vsock"} <= names
    for p in profiles:
        assert set(p.variants) <= set(ALL_VARIANTS)


def test_keyboard_is_modern_only():
    assert "pci-transitional" not in resolve_profile("virtio-input").variants


def test_vhost_user_profiles_share_guest_memory():
    assert resolve_profile("vhost-user-blk").shared_memory
    assert resolve_profile("vhost-user-fs").shared_memory


@pytest.mark.parametrize("text, complaint", [
    ("virtio_id = 2\nvariants = ['pci']\n", "'device' is missing"),
    ("virtio_id = 'two'\nvariants = ['pci']\ndevice = 'x'\n", "'virtio_id' must be int"),
    ("virtio_id = 2\nvariants = ['usb']\ndevice = 'x'\n", "names 'usb'"),
    ("virtio_id = 2\nvariants = ['pci']\ndevice = 'x'\ncolour = 1\n", "unknown field(s) colour"),
    ("virtio_id = 2\nvariants = ['pci']\ndevice = 'x'\nqemu_args = [1]\n", "'qemu_args'"),
    ("virtio_id = 99\nvariants = ['pci']\ndevice = 'x'\n", "outside 1..63"),
    ("virtio_id = = 2\n", "not valid TOML"),
    ("virtio_id = 2\nvariants = ['pci']\ndevice = 'x'\nscratch_files = {a = 'lots'}\n",
     "is not a size"),
])
def test_malformed_profile_names_file_and_field(tmp_path, text, complaint):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    assert str(path) in str(e.value)
    assert complaint in str(e.value)


def test_unknown_profile_name_lists_shipped_ones():
    with pytest.raises(ConfigError, match="virtio-blk"):
        resolve_profile("virtio-toaster")


def test_profile_by_path(tmp_path):
    path = tmp_path / "my-device.toml"
    path.write_text("virtio_id = 4\nvariants = ['pci']\ndevice = 'virtio-rng'\n")
    p = resolve_profile(str(path))
    assert p.name == "my-device"
    assert p.frontend("pci") == "virtio-rng-pci"
    assert p.frontend("mmio") == "virtio-rng-device"


def test_missing_backend_binary_is_reported(tmp_path):
    path = tmp_path / "needs-daemon.toml"
    path.write_text("virtio_id = 2\nvariants = ['pci']\ndevice = 'x'\n"
                    "[[backend]]\nbinary = 'no-such-daemon-anywhere'\n")
    assert "no-such-daemon-anywhere" in load_profile(path).missing_host_requirements()[0]
