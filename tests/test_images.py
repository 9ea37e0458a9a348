"""Fast tests of the guest-image builder: no network, no apt, no guest.

The one test that really builds an image is marked ``guest`` (it needs apt and a mirror).
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import images
from conformance.errors import CacheDirError, ImageBuildError
from conformance.images import builder, debian, elf, kernel
from conformance.images.cpio import NewcWriter, read_newc
from conformance.images.recipe import RecipeError, default_recipe_path, load_recipe, parse_recipe
from conformance.images.tree import PackageTree, Selection, compile_patterns, merged_usr

SHIPPED = default_recipe_path()
GUEST_IMAGES = SHIPPED.parent


# --- cpio ------------------------------------------------------------------------------

def test_newc_round_trip(tmp_path):
    host_file = tmp_path / "blob"
    host_file.write_bytes(b"x" * 1001)
    host_file.chmod(0o750)
    out = io.BytesIO()
    writer = NewcWriter(out, mtime=1234)
    writer.add_dir("usr", 0o755)
    writer.add_file("usr/hello", b"hello\n", 0o644)
    writer.add_file_from("usr/blob", host_file)
    writer.add_symlink("bin", "usr/bin")
    writer.add_char_device("/dev/console", 5, 1, 0o600)
    writer.add_file("empty", b"")
    writer.close()
    data = out.getvalue()

    assert len(data) % 4 == 0
    entries = {e.name: e for e in read_newc(data)}
    assert list(entries) == ["usr", "usr/hello", "usr/blob", "bin", "dev/console", "empty"]
    assert entries["usr"].is_dir and stat.S_IMODE(entries["usr"].mode) == 0o755
    assert entries["usr/hello"].data == b"hello\n"
    assert entries["usr/blob"].data == b"x" * 1001
    assert stat.S_IMODE(entries["usr/blob"].mode) == 0o750
    assert entries["bin"].is_symlink and entries["bin"].data == b"usr/bin"
    assert stat.S_ISCHR(entries["dev/console"].mode) and entries["dev/console"].rdev == (5, 1)
    assert entries["empty"].is_file and entries["empty"].data == b""
    assert all(e.mtime == 1234 for e in entries.values())
    assert data.endswith(b"\0") and b"TRAILER!!!" in data[-128:]


def test_newc_is_readable_by_cpio_tool(tmp_path):
    if not shutil.which("cpio"):
        pytest.skip("cpio tool not installed")
    archive = tmp_path / "a.cpio"
    with open(archive, "wb") as out:
        writer = NewcWriter(out)
        writer.add_dir("d")
        writer.add_file("d/f", b"content")
        writer.add_symlink("d/l", "f")
        writer.close()
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == ["d", "d/f", "d/l"]


def test_newc_rejects_duplicates_and_writes_after_close():
    writer = NewcWriter(io.BytesIO())
    writer.add_file("a", b"1")
    with pytest.raises(ValueError, match="duplicate"):
        writer.add_file("/a", b"2")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add_file("b", b"")


# --- recipe ----------------------------------------------------------------------------

def test_shipped_recipe_is_valid():
    recipe = load_recipe()
    assert recipe.kernel_package.name == "linux-image-amd64"
    names = {p.name for p in recipe.packages}
    assert {"busybox-static", "dropbear-bin", "python3.11-minimal", "libpython3.11-stdlib",
            "libffi8", "libc6", "pciutils", "libpci3"} <= names
    modules = set(recipe.modules)
    assert {"virtio_mmio", "virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
            "virtiofs", "9pnet_virtio", "vmw_vsock_virtio_transport", "e1000e"} <= modules
    assert recipe.init == GUEST_IMAGES / "init"
    assert recipe.overlay == GUEST_IMAGES / "rootfs"
    assert "usr/lib/python3.11/test" in recipe.exclude


def _recipe_text(**replace: str) -> str:
    text = SHIPPED.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def _write_recipe(directory: Path, text: str) -> Path:
    shutil.copy(GUEST_IMAGES / "init", directory / "init")
    shutil.copytree(GUEST_IMAGES / "rootfs", directory / "rootfs", dirs_exist_ok=True)
    path = directory / "recipe.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old, new, message", [
    ("format = 1", "format = 2", "format"),
    ("[python]", "[pyhton]", "unknown top-level"),
    ("compile = true", "compile = true\ncompyle = true", "unknown keys in \\[python\\]"),
    ('"virtio_blk",', '"virtio blk",', "not a module name"),
    ('"virtio_blk",', '"virtio_blk", "virtio-blk",', "twice"),
    ('"busybox-static",', '"busybox-static", "busybox-static",', "twice"),
    ('"busybox-static",', '"Busybox",', "not a Debian package name"),
    ('"usr/bin/busybox",', '"/usr/bin/busybox",', "relative"),
    ('"usr/bin/busybox",', '"usr/../etc/shadow",', "relative"),
    ('init = "init"', 'init = "no-such-init"', "does not exist"),
    ("sources = false", "sources = 0", "true or false"),
])
def test_recipe_errors_name_the_problem(tmp_path, old, new, message):
    path = _write_recipe(tmp_path, _recipe_text(**{old: new}))
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_recipe_parse_error_is_an_image_build_error(tmp_path):
    with pytest.raises(ImageBuildError, match="not valid TOML"):
        parse_recipe("format = [", tmp_path / "r.toml")


def test_pinned_versions_are_kept(tmp_path):
    path = _write_recipe(tmp_path, _recipe_text(**{'"libffi8",': '"libffi8=3.4.4-1",'}))
    ref = next(p for p in load_recipe(path).packages if p.name == "libffi8")
    assert ref.version == "3.4.4-1" and str(ref) == "libffi8=3.4.4-1"


# --- content address -------------------------------------------------------------------

def test_digest_is_stable_and_ignores_comments_and_location(tmp_path):
    shipped = images.image_digest()
    assert shipped == images.image_digest(SHIPPED)
    assert len(shipped) == 64
    commented = _write_recipe(tmp_path, "# a new comment\n" + SHIPPED.read_text())
    assert images.image_digest(commented) == shipped


@pytest.mark.parametrize("change", ["recipe", "init", "overlay"])
def test_digest_changes_with_what_shapes_the_image(tmp_path, change):
    path = _write_recipe(tmp_path, SHIPPED.read_text())
    before = images.image_digest(path)
    if change == "recipe":
        path.write_text(_recipe_text(**{'"virtio_blk",': '"virtio_blk", "loop",'}))
    elif change == "init":
        with open(tmp_path / "init", "a") as f:
            f.write("# changed\n")
    else:
        (tmp_path / "rootfs" / "etc" / "motd").write_text("hello\n")
    assert images.image_digest(path) != before


def test_digest_changes_with_builder_version(monkeypatch):
    before = images.image_digest()
    monkeypatch.setattr(builder, "BUILDER_VERSION", builder.BUILDER_VERSION + "-next")
    assert images.image_digest() != before


# --- the package tree ------------------------------------------------------------------

def test_merged_usr_layout():
    assert merged_usr("bin/busybox") == "usr/bin/busybox"
    assert merged_usr("/lib/x86_64-linux-gnu/libc.so.6") == "usr/lib/x86_64-linux-gnu/libc.so.6"
    assert merged_usr("lib64/ld-linux-x86-64.so.2") == "usr/lib64/ld-linux-x86-64.so.2"
    assert merged_usr("usr/bin/python3.11") == "usr/bin/python3.11"
    assert merged_usr("etc/passwd") == "etc/passwd"
    assert merged_usr("library/x") == "library/x"


def test_patterns_match_a_path_or_anything_below_it():
    pattern = compile_patterns(["usr/lib/python3.11/test", "*/__pycache__", "a/lib-*/_test*"])
    assert pattern is not None
    assert pattern.match("usr/lib/python3.11/test")
    assert pattern.match("usr/lib/python3.11/test/support/x.py")
    assert not pattern.match("usr/lib/python3.11/textwrap.py")
    assert not pattern.match("usr/lib/python3.11/testing.py")
    assert pattern.match("usr/lib/python3.11/json/__pycache__/x.pyc")
    assert pattern.match("a/lib-dynload/_testcapi.so")
    assert compile_patterns([]) is None


def _fake_root_with_system_binary(root: Path, *, with_libc: bool = True) -> Path:
    """Two fake packages laid out like bookworm's (files in /lib, /bin), from host files."""
    tool = Path(shutil.which("true") or "/bin/true").resolve()
    app = root / "app"
    (app / "bin").mkdir(parents=True)
    shutil.copy(tool, app / "bin" / "tool")
    (app / "bin" / "tool-link").symlink_to("tool")
    libc_pkg = root / "libc"
    needed = elf.dynamic_info(tool).needed
    libdir = libc_pkg / "lib" / "x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    interp = elf.dynamic_info(tool).interpreter
    assert interp is not None
    (libc_pkg / "lib64").mkdir()
    shutil.copy(Path(interp).resolve(), libdir / Path(interp).name)
    (libc_pkg / "lib64" / Path(interp).name).symlink_to(
        f"/lib/x86_64-linux-gnu/{Path(interp).name}")
    if with_libc:
        for name in needed:
            host = next(Path(d) / name for d in ("/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64",
                                                 "/usr/lib/x86_64-linux-gnu")
                        if (Path(d) / name).exists())
            real = host.resolve()
            shutil.copy(real, libdir / real.name)
            if real.name != name:
                (libdir / name).symlink_to(real.name)
    return root


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux ELF system binaries")
def test_shared_libraries_follow_dt_needed(tmp_path):
    root = _fake_root_with_system_binary(tmp_path)
    tree = PackageTree()
    tree.add_package("app", root / "app")
    tree.add_package("libc", root / "libc")
    assert "usr/bin/tool" in tree.nodes and "usr/lib64" in tree.nodes
    selection = Selection(tree)
    selection.add_matching(["usr/bin/tool-link"], [], "test")
    assert set(selection.nodes) == {"usr/bin/tool-link", "usr/bin/tool"}
    selection.add_needed_libraries(builder.LIBRARY_DIRS)
    chosen = set(selection.nodes)
    assert "usr/lib/x86_64-linux-gnu/libc.so.6" in chosen
    interp = Path(elf.dynamic_info(root / "app" / "bin" / "tool").interpreter or "").name
    assert f"usr/lib64/{interp}" in chosen                       # the symlink...
    assert f"usr/lib/x86_64-linux-gnu/{interp}" in chosen        # ...and what it points at


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux ELF system binaries")
def test_missing_library_is_named(tmp_path):
    root = _fake_root_with_system_binary(tmp_path, with_libc=False)
    tree = PackageTree()
    tree.add_package("app", root / "app")
    tree.add_package("libc", root / "libc")
    selection = Selection(tree)
    selection.add_matching(["usr/bin/tool"], [], "test")
    with pytest.raises(ImageBuildError, match=r"library libc\.so\.6 \(needed by /usr/bin/tool\)"):
        selection.add_needed_libraries(builder.LIBRARY_DIRS)


def test_include_without_wildcards_must_exist(tmp_path):
    (tmp_path / "p" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "p" / "usr" / "bin" / "a").write_text("a")
    tree = PackageTree()
    tree.add_package("p", tmp_path / "p")
    selection = Selection(tree)
    with pytest.raises(ImageBuildError, match="usr/bin/typo"):
        selection.add_matching(["usr/bin/a", "usr/bin/typo"], [], "test")
    selection.add_matching(["usr/bin/a", "usr/bin/z*"], [], "test")  # wildcards may match nothing


def test_relative_symlinks_in_moved_directories_are_pinned(tmp_path):
    pkg = tmp_path / "p"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "usr" / "lib").mkdir(parents=True)
    (pkg / "usr" / "lib" / "real.so").write_text("x")
    (pkg / "lib" / "link.so").symlink_to("../usr/lib/real.so")
    tree = PackageTree()
    tree.add_package("p", pkg)
    assert tree.nodes["usr/lib/link.so"].target == "/usr/lib/real.so"
    assert tree.resolve("lib/link.so") == "usr/lib/real.so"
    assert tree.symlink_chain("usr/lib/link.so") == ["usr/lib/link.so"]


def test_conflicting_files_are_an_error(tmp_path):
    for name, content in (("a", "one"), ("b", "two")):
        (tmp_path / name / "etc").mkdir(parents=True)
        (tmp_path / name / "etc" / "conf").write_text(content)
    tree = PackageTree()
    tree.add_package("a", tmp_path / "a")
    with pytest.raises(ImageBuildError, match="shipped by both a and b"):
        tree.add_package("b", tmp_path / "b")


def test_dynamic_info_of_a_system_binary():
    info = elf.dynamic_info(Path(sys.executable).resolve())
    assert any(n.startswith("libc.so") for n in info.needed) or info.needed == []
    assert not elf.is_elf(Path(__file__))


# --- kernel ----------------------------------------------------------------------------

def _fake_bzimage(payload: bytes, setup_sects: int = 3) -> bytes:
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    offset = 0x40
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    return bytes(setup) + b"\0" * offset + payload + b"\0\0\0\0"


def test_bzimage_payload_is_found_and_decompressed():
    fake_elf = elf.ELF_MAGIC + b"\x02\x01\x01" + b"kernel" * 100
    packed = lzma.compress(fake_elf, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    payload = kernel.bzimage_payload(_fake_bzimage(packed))
    assert payload == packed
    assert kernel.decompress_payload(payload) == fake_elf


def test_bzimage_errors():
    with pytest.raises(ImageBuildError, match="not a bzImage"):
        kernel.bzimage_payload(b"\0" * 4096)
    with pytest.raises(ImageBuildError, match="not supported"):
        kernel.decompress_payload(b"\x28\xb5\x2f\xfd" + b"\0" * 16)


def test_xen_notes_are_parsed():
    def note(name: bytes, kind: int, desc: bytes) -> bytes:
        name += b"\0"
        return (struct.pack("<III", len(name), len(desc), kind)
                + name + b"\0" * (-len(name) % 4) + desc + b"\0" * (-len(desc) % 4))
    blob = note(b"GNU", 3, b"abcd") + note(b"Xen", elf.XEN_ELFNOTE_PHYS32_ENTRY,
                                            struct.pack("<I", 0x1000850))
    notes = list(elf.iter_notes(blob))
    assert notes[0][:2] == ("GNU", 3)
    assert notes[1] == ("Xen", 18, struct.pack("<I", 0x1000850))


def _fake_module_tree(tmp_path: Path, monkeypatch, infos: dict[str, dict]) -> kernel.ModuleTree:
    directory = tmp_path / "lib" / "modules" / "6.1.0-99-amd64"
    for name in infos:
        path = directory / "kernel" / "drivers" / f"{name.replace('_', '-')}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (directory / "modules.builtin").write_text("kernel/drivers/virtio/virtio_anchor.ko\n")

    def fake_modinfo(path: Path) -> dict[str, list[str]]:
        return infos[path.name[:-3].replace("-", "_")]
    monkeypatch.setattr(kernel.elf, "modinfo", fake_modinfo)
    return kernel.ModuleTree.find(tmp_path)


def test_module_closure_and_modules_dep(tmp_path, monkeypatch):
    tree = _fake_module_tree(tmp_path, monkeypatch, {
        "virtio": {"depends": [""]},
        "virtio_ring": {"depends": [""]},
        "failover": {"depends": [""]},
        "net_failover": {"depends": ["failover"]},
        "virtio_net": {"depends": ["net_failover,virtio,virtio_ring"],
                       "alias": ["virtio:d00000001v*"]},
        "crc32c_generic": {"depends": [""]},
        "virtio_blk": {"depends": ["virtio,virtio_ring"], "softdep": ["pre: crc32c_generic"]},
        "unused": {"depends": [""]},
    })
    assert tree.version == "6.1.0-99-amd64"
    chosen, builtin = tree.closure(["virtio-net", "virtio_blk", "virtio_anchor"])
    names = [m.name for m in chosen]
    assert builtin == ["virtio_anchor"]
    assert "unused" not in names and "crc32c_generic" in names
    for module in chosen:  # every dependency comes before its dependant
        assert all(names.index(d) < names.index(module.name) for d in module.depends)

    dep = kernel.modules_dep(tree, chosen).splitlines()
    line = next(entry for entry in dep if entry.startswith("kernel/drivers/virtio-net.ko:"))
    listed = line.split(":", 1)[1].split()
    # busybox modprobe loads from the end of the list: failover must come after net_failover
    assert listed.index("kernel/drivers/failover.ko") > listed.index("kernel/drivers/net-failover.ko")
    assert "kernel/drivers/virtio.ko" in listed
    assert "kernel/drivers/virtio.ko:" in dep
    assert "alias virtio:d00000001v* virtio_net" in kernel.modules_alias(chosen)


def test_unknown_module_is_named(tmp_path, monkeypatch):
    tree = _fake_module_tree(tmp_path, monkeypatch, {"virtio": {"depends": ["virtio_gone"]}})
    with pytest.raises(ImageBuildError, match="virtio_nope"):
        tree.closure(["virtio_nope"])
    with pytest.raises(ImageBuildError, match=r"virtio_gone \(needed by virtio\)"):
        tree.closure(["virtio"])


# --- apt ---------------------------------------------------------------------------------

def test_control_records_and_deb_names():
    records = debian.parse_control(
        "Package: a\nVersion: 1:2.0-1\nDescription: x\n more\n\nPackage: b\nVersion: 3\n")
    assert [r["Package"] for r in records] == ["a", "b"]
    assert records[0]["Description"] == "x\nmore"
    package = debian.DebPackage("busybox-static", "1:1.35.0-4", "amd64")
    assert package.filename == "busybox-static_1%3a1.35.0-4_amd64.deb"
    assert package.spec == "busybox-static=1:1.35.0-4"


def test_kernel_meta_package_points_at_the_abi_package(monkeypatch):
    abi = debian.DebPackage("linux-image-6.1.0-56-amd64", "6.1.192-2", "amd64")
    monkeypatch.setattr(debian, "resolve", lambda name, version=None: abi)
    meta = debian.DebPackage("linux-image-amd64", "6.1.192-2", "amd64",
                             depends="linux-image-6.1.0-56-amd64 (= 6.1.192-2)")
    assert debian.kernel_behind(meta) == abi
    assert debian.kernel_behind(abi) == abi
    with pytest.raises(ImageBuildError, match="does not depend"):
        debian.kernel_behind(debian.DebPackage("linux-headers-amd64", "1", "amd64",
                                               depends="gcc"))


# --- cache -----------------------------------------------------------------------------

def test_missing_apt_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda _name: None)
    with pytest.raises(ImageBuildError, match="apt-get.*Debian 12"):
        images.build_image(cache_dir=tmp_path)
    assert not list((tmp_path / "images").glob(".tmp-*")), "a failed build leaves no temp dir"


def test_interrupted_build_leaves_no_half_image(tmp_path, monkeypatch):
    def explode(self):
        (self.staging / "vmlinux").write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(builder._Build, "run", explode)
    with pytest.raises(KeyboardInterrupt):
        images.build_image(cache_dir=tmp_path)
    leftovers = [p.name for p in (tmp_path / "images").iterdir() if p.name != ".locks"]
    assert leftovers == []


@pytest.mark.skipif(not shutil.which("apt-cache"), reason="needs apt-cache (no network)")
def test_unknown_package_is_named(tmp_path):
    path = _write_recipe(tmp_path, _recipe_text(**{'"libffi8",': '"libffi8", "no-such-pkg-vc",'}))
    with pytest.raises(ImageBuildError, match=r"no-such-pkg-vc.*apt-get update"):
        images.build_image(path, cache_dir=tmp_path / "cache")


def test_unwritable_cache_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheDirError, match="VIRTIO_CONFORMANCE_CACHE"):
        images.build_image(cache_dir=blocker / "cache")


def _fake_cached_image(cache: Path, digest: str) -> Path:
    directory = cache / "images" / digest
    directory.mkdir(parents=True)
    (directory / "vmlinux").write_bytes(b"k" * 10)
    (directory / "initrd").write_bytes(b"i" * 20)
    manifest = {"digest": digest,
                "kernel": {"size": 10, "sha256": debian.sha256_file(directory / "vmlinux"),
                           "release": "6.1.0-99-amd64"},
                "initrd": {"size": 20, "sha256": debian.sha256_file(directory / "initrd")}}
    (directory / "manifest.json").write_text(__import__("json").dumps(manifest))
    return directory


def test_cached_image_is_reused_without_apt(tmp_path, monkeypatch):
    digest = images.image_digest()
    _fake_cached_image(tmp_path, digest)
    monkeypatch.setattr(debian.shutil, "which", lambda _name: None)  # apt would fail
    lines: list[str] = []
    image = images.build_image(cache_dir=tmp_path, progress=lines.append)
    assert image.digest == digest and image.kernel.name == "vmlinux"
    assert image.kernel_release == "6.1.0-99-amd64"
    assert image.manifest_path == tmp_path / "images" / digest / "manifest.json"
    assert lines and "cached" in lines[0]


def test_incomplete_cached_image_is_not_used(tmp_path):
    directory = _fake_cached_image(tmp_path, "ab" * 32)
    assert images.load_cached("ab" * 32, tmp_path, deep=True) is not None
    (directory / "initrd").write_bytes(b"i" * 19)
    assert images.load_cached("ab" * 32, tmp_path) is None
    (directory / "initrd").write_bytes(b"j" * 20)
    assert images.load_cached("ab" * 32, tmp_path) is not None
    assert images.load_cached("ab" * 32, tmp_path, deep=True) is None
    assert images.load_cached("cd" * 32, tmp_path) is None


def test_stale_temporary_builds_are_removed(tmp_path):
    root = tmp_path / "images"
    mine = root / f".tmp-{'a' * 64}-999999"
    other = root / f".tmp-{'b' * 64}-999998"
    for d in (mine, other):
        (d / "work").mkdir(parents=True)
    builder._clean_stale(root, "a" * 64)
    assert not mine.exists() and not other.exists()


# --- the guest's init ------------------------------------------------------------------

def test_init_script_parses_and_speaks_the_documented_protocol():
    init = GUEST_IMAGES / "init"
    assert os.access(init, os.X_OK)
    subprocess.run(["sh", "-n", str(init)], check=True)
    text = init.read_text()
    for param in (images.PARAM_AUTHKEY, images.PARAM_CTLMAC, images.PARAM_CTLMOD,
                  images.PARAM_CTLMMIO, images.PARAM_CTLPCI, images.PARAM_IP, images.PARAM_GW):
        assert f"{param}=*)" in text, param
    for marker in (images.MARKER_INIT, images.MARKER_READY, images.MARKER_FAIL,
                   images.MARKER_HOSTKEY):
        assert marker in text
    assert "dropbear -F -E -s " in text  # -s: password logins are refused


def test_overlay_has_a_root_account_without_password():
    passwd = (GUEST_IMAGES / "rootfs" / "etc" / "passwd").read_text()
    shadow = (GUEST_IMAGES / "rootfs" / "etc" / "shadow").read_text()
    assert passwd.startswith("root:x:0:0:")
    assert shadow.startswith("root:*:")


# --- a real build (apt and a Debian mirror) ---------------------------------------------

@pytest.mark.guest
def test_real_build_produces_a_bootable_pair(tmp_path_factory):
    if not shutil.which("apt-get"):
        pytest.skip("apt-get not available")
    image = images.build_image()
    manifest = image.manifest
    assert manifest["digest"] == image.digest == images.image_digest()
    assert manifest["kernel"]["package"].startswith("linux-image-6.1.0-")
    assert manifest["kernel"]["release"] in manifest["kernel"]["package"]
    assert elf.pvh_entry(image.kernel) is not None
    assert set(manifest["packages"]) >= {"busybox-static", "dropbear-bin", "libc6"}
    names = {e.name for e in read_newc(image.initrd.read_bytes())}
    release = manifest["kernel"]["release"]
    assert {"init", "dev/console", "usr/bin/busybox", "usr/sbin/dropbear", "usr/bin/python3",
            "usr/bin/lspci", f"usr/lib/modules/{release}/modules.dep"} <= names
    assert not any(n.startswith("usr/lib/python3.11/test/") for n in names)
