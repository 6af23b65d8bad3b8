"""Versions of one user's avatar: the catalog collection ``avatar/<capture_id>``, every object sealed.

A version row (the catalog's generic ``versions`` table: number, parent, author, message, time)
points at a JSON manifest naming its objects: ``avatar`` (analysis + parameters JSON), ``preview``,
``source`` (what creation needs to rebuild the avatar without a new capture: best frame, its
landmarks, the head-pose track, the voice), ``glb``, ``vrm``, ``voice`` (WAV), ``turntable_png``,
``turntable_mp4``. Each object is sealed with the owner's key (context ``|avatar-derived``), so the
manifest says nothing personal. A customisation publishes new objects for what it rebuilt and
reuses the keys of what it did not (the source and preview); a rollback publishes a new version
whose manifest *is* the target's (the same key: equal content by construction, nothing deleted),
as worlds do (``gaiverse.world.versions``). The owner is the author of version 1; everyone else is
told the avatar does not exist. Implements the versioning of AV-c3.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gaiverse.avatar.capture import DERIVED_CONTEXT, DERIVED_KIND
from storage.catalog import Version
from storage.objectstore import AssetRef

log = logging.getLogger(__name__)

MANIFEST_KIND = "avatar/manifest"
MEDIA_TYPES = {"glb": "model/gltf-binary", "vrm": "model/gltf-binary", "voice": "audio/wav",
               "turntable_png": "image/png", "turntable_mp4": "video/mp4", "preview": "image/png"}
"""Content type of each downloadable object once opened (stored sealed as octet streams)."""


class AvatarNotFound(LookupError):
    """No such avatar or version among the caller's avatars (answered as 404)."""


def avatar_collection(capture_id: str) -> str:
    """Catalog collection of the avatar made from a capture."""
    return f"avatar/{capture_id}"


@dataclass
class AvatarVersions:
    """The avatars of one owner on one object store and catalog, sealed with that owner's key.

    ``vault`` is a ``gaiverse.privacy.SubjectVault`` and ``subject`` the owner's pseudonym in it.
    """

    store: Any
    catalog: Any
    vault: Any
    subject: str
    owner: str

    # ---- reading ----
    def versions(self, capture_id: str) -> list[Version]:
        """Every version, oldest first; AvatarNotFound unless this owner made version 1."""
        versions = self.catalog.versions(avatar_collection(capture_id))
        if not versions or versions[0].author != self.owner:
            raise AvatarNotFound(f"no avatar {capture_id!r} among your avatars")
        return versions

    def version(self, capture_id: str, number: int | None = None) -> Version:
        """One version (the latest when ``number`` is None)."""
        versions = self.versions(capture_id)
        if number is None:
            return versions[-1]
        found = [v for v in versions if v.version == number]
        if not found:
            raise AvatarNotFound(f"avatar {capture_id!r} has no version {number} (versions 1..{versions[-1].version})")
        return found[0]

    def manifest(self, version: Version) -> dict[str, Any]:
        return json.loads(self.store.get_bytes(version.manifest_key))

    def open(self, manifest: dict[str, Any], name: str) -> bytes:
        """One object of a version, opened with the owner's key; AvatarNotFound when the version has none."""
        ref = manifest["assets"].get(name)
        if ref is None:
            raise AvatarNotFound(f"this avatar version has no {name!r} (made before the creation engines ran)")
        return self.vault.open(self.subject, self.store.get_bytes(ref["key"]), DERIVED_CONTEXT)

    def result(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The version's analysis + parameters JSON."""
        return json.loads(self.open(manifest, "avatar"))

    # ---- writing ----
    def publish(self, capture_id: str, objects: dict[str, bytes], *, reuse: dict[str, dict] | None = None,
                meta: dict[str, Any], message: str, parent_version: int | None = None,
                flow_run_id: str | None = None) -> Version:
        """Seal and store ``objects``, then publish a version whose manifest lists them and the ``reuse`` refs.

        ``parent_version`` is the version this one was derived from (None: the latest, or none for v1).
        """
        if not self.vault.has_key(self.subject):  # erased meanwhile: sealing would make a new key
            raise AvatarNotFound(f"the owner of avatar {capture_id!r} has no key any more (their data was erased)")
        refs = {name: self.store.put_bytes(self.vault.seal(self.subject, data, DERIVED_CONTEXT),
                                           kind=DERIVED_KIND, ext="bin") for name, data in objects.items()}
        assets = {**(reuse or {}), **{name: ref.to_dict() for name, ref in refs.items()}}
        manifest = {**meta, "capture_id": capture_id, "owner": self.owner, "flow_run_id": flow_run_id,
                    "assets": assets}
        manifest_ref = self.store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                            kind=MANIFEST_KIND, ext="json")
        version = self.catalog.publish_version(avatar_collection(capture_id), manifest=manifest_ref,
                                               assets=[AssetRef(**ref) for ref in assets.values()], message=message,
                                               author=self.owner, flow_run_id=flow_run_id,
                                               parent_version=parent_version)
        log.info("published %s v%d (%d new objects)", avatar_collection(capture_id), version.version, len(refs))
        return version

    def rollback(self, capture_id: str, to_version: int, message: str | None = None) -> Version:
        """A new version whose manifest is that of ``to_version`` (history is kept; nothing is deleted)."""
        target = self.version(capture_id, to_version)
        manifest = self.manifest(target)
        rows = self.catalog.query("SELECT key, kind, sha256, bytes, content_type FROM assets WHERE key = ?",
                                  [target.manifest_key])
        if not rows:
            raise AvatarNotFound(f"the manifest of avatar {capture_id!r} v{to_version} is not in the catalog")
        return self.catalog.publish_version(
            avatar_collection(capture_id), manifest=AssetRef(**rows[0]),
            assets=[AssetRef(**ref) for ref in manifest["assets"].values()],
            message=message or f"rollback to v{to_version}", author=self.owner, parent_version=None)

    def listing(self, capture_id: str) -> list[dict[str, Any]]:
        """Version, parent, author, message, time and a summary of the parameters, newest first."""
        from gaiverse.avatar.customisation import params_summary

        out = []
        for v in reversed(self.versions(capture_id)):
            manifest = self.manifest(v)
            result = self.result(manifest)
            out.append({"version": v.version, "parent": v.parent_version, "author": v.author, "message": v.message,
                        "created": v.created_at, "params": params_summary(result.get("params", {})),
                        "customisation": result.get("customisation"),
                        "downloads": sorted(
                            n for n in manifest["assets"] if n in MEDIA_TYPES and n != "preview")})
        return out

