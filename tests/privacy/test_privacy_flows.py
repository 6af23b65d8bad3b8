"""The personalization flows against the real services (Prefect server, S3 server, catalog): validated bulk
import of the shipped logs, refusal of a bad log, and the retention run deleting old rows and sealed media."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gaiverse.config import REPO_ROOT
from gaiverse.personalization.service import PersonalizationService

from tests.media import png_bytes

from .conftest import consent_all

pytestmark = pytest.mark.slow
OBD_LOG = "data/interactions/obd/random/men/men.csv"


@pytest.fixture
def service(settings, store, catalog) -> PersonalizationService:
    """A service of the session installation (same DuckDB file and keys as the flows use)."""
    return PersonalizationService.from_settings(settings, blobs=store)


@pytest.mark.clause("PER-a2")
@pytest.mark.clause("PER-f1")
def test_import_flow_validates_pseudonymises_records_and_is_idempotent(prefect_api, service, catalog):
    from flows.personalization import import_interactions

    before = service.store.count()
    summary = import_interactions(paths=[OBD_LOG])[0]
    assert summary["rows"] == 7189 and summary["format"] == "obd" and not summary["already_imported"]
    assert service.store.count() - before == 7189
    users = service.store.users()
    assert users and all(u.startswith("u-") and len(u) == 34 for u in users)
    validation = catalog.query("SELECT success, details FROM validations WHERE suite = 'personalization.import' "
                               "ORDER BY created_at DESC LIMIT 1")[0]
    assert validation["success"]
    assert catalog.asset(summary["manifest"])["kind"] == "personalization/import"
    again = import_interactions(paths=[OBD_LOG])[0]
    assert again["already_imported"] and service.store.count() - before == 7189
    imported = service.store.frame("source LIKE ?", ["%men.csv"])
    assert imported["features"].str.startswith('"gv1:').all()  # derived features sealed per user


@pytest.mark.clause("PER-a2")
def test_import_flow_refuses_a_bad_log_and_stores_nothing(prefect_api, service, tmp_path):
    from flows.personalization import import_interactions

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,user_id,event,item_id\n2026-01-01T10:00:00Z,u1,message,\n"
                   "2026-01-01T10:01:00Z,u1,teleport,x1\n")
    before = service.store.count()
    with pytest.raises(Exception, match="teleport"):
        import_interactions(paths=[str(bad)])
    assert service.store.count() == before


@pytest.mark.clause("PER-f1")
def test_retention_flow_deletes_old_interactions_media_and_catalog_rows(prefect_api, service, store, catalog):
    from flows.personalization import enforce_retention

    account = "retention-account"
    consent_all(service, account)
    subject = service.subject(account)
    service.observe_text(account, "fresh words")
    old = datetime.now(timezone.utc) - timedelta(days=40)
    ref = store.put_bytes(service.vault.seal(subject, png_bytes(), b"|media"), kind="personal/image", ext="bin")
    catalog.record_asset(ref)
    service.store.record(subject, modality="image", ts=old, media_key=ref.key)
    result = enforce_retention(days=30)
    assert result["interactions"] >= 1 and result["media_objects"] >= 1
    assert not store.exists(ref.key) and catalog.asset(ref.key) is None
    service.refresh()
    assert [i.text for i in service.history(account)] == ["fresh words"]


def test_shipped_log_exists():
    assert (REPO_ROOT / OBD_LOG).is_file()
