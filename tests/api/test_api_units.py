"""Fast checks of the API's pure parts: keys and the admin key file, parameter checks, file sniffing."""

from __future__ import annotations

import json
import stat
import struct

import pytest

from gaiverse.api.filetypes import content_matches, type_for_filename
from gaiverse.api.keys import create_user, ensure_admin, find_user_by_key, hash_key, read_admin_key
from gaiverse.api.prefect_gateway import InvalidParameters, check_parameters
from gaiverse.config import Settings
from gaiverse.speech.wav import pcm16_wav
from storage.catalog import Catalog


@pytest.fixture
def local(tmp_path, monkeypatch):
    """Settings without an admin key and a fresh catalog in a temp dir."""
    monkeypatch.delenv("GAIVERSE_ADMIN_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, admin_key=None)
    return settings, Catalog(settings.catalog_path)


def test_generated_admin_key_is_saved_once_with_mode_0600(local, capsys):
    settings, catalog = local
    key = ensure_admin(settings, catalog)
    assert key is not None and key.startswith("gv_") and len(key) > 40
    path = settings.data_dir / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key == read_admin_key(settings)
    assert key in capsys.readouterr().err  # printed once ...
    assert ensure_admin(settings, catalog) is None  # ... and not again on the next start
    assert key not in capsys.readouterr().err
    user = find_user_by_key(catalog, key)
    assert user is not None and user.is_admin and user.name == "admin"
    stored = catalog.query("SELECT key_hash FROM users")
    assert [row["key_hash"] for row in stored] == [hash_key(key)]  # only the hash is stored


def test_configured_admin_key_is_used_and_rotated(local):
    settings, catalog = local
    first = Settings(data_dir=settings.data_dir, admin_key="gv_configured_key_number_one")
    assert ensure_admin(first, catalog) is None
    assert find_user_by_key(catalog, "gv_configured_key_number_one").is_admin
    assert not (settings.data_dir / "admin.key").exists()
    second = Settings(data_dir=settings.data_dir, admin_key="gv_configured_key_number_two")
    ensure_admin(second, catalog)
    assert find_user_by_key(catalog, "gv_configured_key_number_one") is None
    assert find_user_by_key(catalog, "gv_configured_key_number_two").is_admin


def test_short_configured_admin_key_is_refused(local):
    settings, catalog = local
    with pytest.raises(ValueError, match="admin_key"):
        ensure_admin(Settings(data_dir=settings.data_dir, admin_key="short"), catalog)


def test_user_names_are_checked_and_unique(local):
    _, catalog = local
    user, key = create_user(catalog, "carol")
    assert find_user_by_key(catalog, key) == user
    with pytest.raises(LookupError, match="carol"):
        create_user(catalog, "carol")
    with pytest.raises(ValueError, match="`name`"):
        create_user(catalog, "no spaces please")
    assert find_user_by_key(catalog, "gv_unknown") is None


SCHEMA = {
    "title": "Parameters", "type": "object", "required": ["n"],
    "properties": {"n": {"title": "n", "position": 0, "type": "integer"},
                   "label": {"title": "label", "position": 1, "type": "string", "default": "x"}},
}


@pytest.mark.parametrize("parameters, named", [
    ({"n": "abc"}, "`n`"), ({}, "`n`"), ({"n": 1, "colour": "red"}, "`colour`"),
    ({"n": 1, "label": 3}, "`label`"),
])
def test_bad_parameters_are_named(parameters, named):
    with pytest.raises(InvalidParameters, match=named):
        check_parameters(SCHEMA, parameters)


def test_good_parameters_pass():
    check_parameters(SCHEMA, {"n": 3})
    check_parameters(SCHEMA, {"n": 3, "label": "y"})
    check_parameters(None, {})


def _wav_bytes() -> bytes:
    return pcm16_wav(b"\x00\x00" * 160, 16000)


def _glb_bytes() -> bytes:
    chunk = json.dumps({"asset": {"version": "2.0"}}).encode().ljust(28, b" ")
    body = struct.pack("<II", len(chunk), 0x4E4F534A) + chunk
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


@pytest.mark.parametrize("filename, data, ok", [
    ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, True),
    ("a.png", b"GIF89a....", False),
    ("a.JPEG", b"\xff\xd8\xff\xe0" + b"\x00" * 20, True),
    ("a.wav", _wav_bytes(), True),
    ("a.glb", _glb_bytes(), True),
    ("a.glb", _glb_bytes()[:-4], False),  # truncated: length field disagrees
    ("a.json", b'{"a": [1, 2]}', True),
    ("a.json", b'{"a": ', False),
    ("a.txt", "héllo\n".encode(), True),
    ("a.txt", b"MZ\x90\x00\x03", False),
    ("a.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8, True),
    ("a.webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", True),
])
def test_content_must_match_extension(tmp_path, filename, data, ok):
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    ftype = type_for_filename(filename)
    assert ftype is not None
    assert content_matches(ftype, path) is ok


def test_unknown_extensions_have_no_type():
    assert type_for_filename("tool.exe") is None
    assert type_for_filename("README") is None
