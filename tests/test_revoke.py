"""revoke_rows: the rows of a table whose key is the secret (DRF tokens, sessions) are
deleted in batches, exactly those planned, and the dump is then proved dead."""

from __future__ import annotations

import threading
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import RequestFactory
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from rotator.models import RevocationKey, Run, Shard
from rotator.service.options import Options
from rotator.service.revocation import Dump, revoke
from rotator.store.claims import Lease
from rotator.target import REVOKE_COLUMN, resolve_revocation

pytestmark = pytest.mark.django_db(transaction=True)


def command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args: str) -> CommandError:
    with pytest.raises(CommandError) as info:
        command(*args)
    return info.value


def make_tokens(n: int) -> list[str]:
    users = User.objects.bulk_create(User(username=f"user{i}", password="!") for i in range(n))
    Token.objects.bulk_create(Token(user=u, key=Token.generate_key()) for u in users)
    return sorted(Token.objects.values_list("key", flat=True))


def authenticates(key: str) -> bool:
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {key}")
    try:
        return TokenAuthentication().authenticate(request) is not None
    except AuthenticationFailed:
        return False


def dump(path: Path, values: list[str]) -> str:
    path.write_text("".join(f"{v}\n" for v in values))
    return str(path)


def test_leaked_tokens_go_the_others_authenticate_and_the_dump_is_dead(tmp_path):
    keys = make_tokens(600)
    leaked, kept = keys[::4] + keys[1::4] + keys[2::4], keys[3::4]
    path = dump(tmp_path / "dump.txt", leaked)
    out, _ = command(
        "revoke_rows", "authtoken.Token", "--leaked", path, "--batch-size", "40", "--workers", "2"
    )
    run = Run.objects.get()
    assert out.splitlines()[:2] == [
        f"Planning a revocation of rows in {path!r} of authtoken.Token in 8 shards ...",
        f"Planned run {run.pk}: 450 rows of authtoken.Token to revoke in 8 shards; rows "
        "created from now on are kept.",
    ]
    assert out.splitlines()[-1].startswith("Revoked 450 rows of authtoken.Token in ")
    assert out.splitlines()[-1].endswith(f"; run {run.pk} finished.")
    assert sorted(Token.objects.values_list("key", flat=True)) == sorted(kept)
    assert all(authenticates(key) for key in kept)
    assert not any(authenticates(key) for key in leaked[:20])
    assert User.objects.count() == 600  # only the tokens went
    run.refresh_from_db()
    assert (run.column, run.options["operation"], run.state) == (
        REVOKE_COLUMN,
        "revoke",
        "finished",
    )
    assert Shard.objects.aggregate(n=Sum("rows_done"))["n"] == 450
    assert not RevocationKey.objects.exists()  # the copied keys end with the run
    out, _ = command("rotate_field", "authtoken.Token.key", "--leaked", path)
    assert out == f"0 of the 450 leaked values in {path!r} are still in authtoken.Token.key\n"
    status, _ = command("revoke_rows", "authtoken.Token", "--status")
    assert status.splitlines()[:2] == [
        f"Run {run.pk} of authtoken.Token: finished",
        "  rows: 450/450 revoked (100.0%)",
    ]


def test_no_key_reaches_a_shard_bound_a_cursor_or_the_output(tmp_path):
    keys = make_tokens(200)
    path = dump(tmp_path / "dump.txt", keys[:150])
    out, err = command("revoke_rows", "authtoken.Token", "--leaked", path, "--batch-size", "30")
    dry, _ = command("revoke_rows", "authtoken.Token", "--leaked", path, "--dry-run")
    texts = [out, err, dry, Run.objects.get().high_water or ""]
    for shard in Shard.objects.all():
        texts += [shard.lower or "", shard.upper, shard.cursor or ""]
    assert not any(key in text for key in keys for text in texts)
    assert all(t.isdigit() for t in texts[3:] if t)  # row numbers of the plan


def test_a_resumed_run_deletes_only_what_it_planned_and_creates_survive(tmp_path):
    """Sessions: every row is revoked in batches while the application logs users in; the
    new sessions (random keys, anywhere in the key space) are not in the plan."""
    Session.objects.bulk_create(
        Session(session_key=f"{i:040x}"[::-1], session_data="e30=", expire_date="2099-01-01T00:00Z")
        for i in range(500)
    )
    old = set(Session.objects.values_list("session_key", flat=True))
    created: list[str] = []
    lock = threading.Lock()
    batches = 0

    def application_logs_in(lease: Lease) -> None:
        nonlocal batches
        with lock:
            batches += 1
        store = SessionStore()
        store.create()  # inside the batch's transaction, as a concurrent login commits
        with lock:
            created.append(store.session_key or "")

    target = resolve_revocation("sessions.Session", "default")
    report = revoke(target, Options(workers=2, batch_size=37, batch_hook=application_logs_in))
    assert report.finished and batches > 10
    left = set(Session.objects.values_list("session_key", flat=True))
    assert left == set(created)
    assert not left & old
    assert report.rotated == len(old)


def test_every_row_needs_a_confirmation_off_a_terminal():
    make_tokens(10)
    error = refused("revoke_rows", "authtoken.Token")
    assert str(error) == (
        "revoke_rows without --leaked deletes every row of authtoken.Token (those created "
        "after the plan stay); pass --yes to confirm revoking every row when not on a terminal"
    )
    assert Token.objects.count() == 10 and not Run.objects.exists()
    command("revoke_rows", "authtoken.Token", "--yes", "-v", "0")
    assert not Token.objects.exists()


def test_a_model_other_tables_reference_is_refused_with_nothing_changed():
    make_tokens(5)
    error = refused("revoke_rows", "auth.User", "--yes")
    assert str(error).startswith(
        "auth.User is referenced by admin.LogEntry.user (CASCADE), auth.User_groups.user "
        "(CASCADE), auth.User_user_permissions.user (CASCADE), authtoken.Token.user (CASCADE), "
    )
    assert str(error).endswith(
        ": a batched DELETE cannot apply on_delete rules other than DO_NOTHING; revoke the "
        "referencing rows (or change on_delete) first"
    )
    assert "\n" not in str(error)
    assert User.objects.count() == 5 and Token.objects.count() == 5
    assert not Run.objects.exists() and not RevocationKey.objects.exists()


def test_pause_resume_and_cancel(tmp_path):
    keys = make_tokens(300)
    path = dump(tmp_path / "dump.txt", keys)

    def pause_after_two(lease: Lease, seen: list[int] = []) -> None:  # noqa: B006
        seen.append(1)
        if len(seen) == 2:
            command("revoke_rows", "authtoken.Token", "--pause")

    target = resolve_revocation("authtoken.Token", "default")
    with pytest.raises(Exception, match=r"^Paused by an operator \(--pause from "):
        revoke(
            target, Options(workers=1, batch_size=20, batch_hook=pause_after_two), Dump(Path(path))
        )
    assert Token.objects.count() == 300 - 2 * 20  # the pausing batch committed too
    status, _ = command("revoke_rows", "authtoken.Token", "--status")
    run = Run.objects.get()
    assert status.splitlines()[0] == f"Run {run.pk} of authtoken.Token: paused"
    assert "  rows: 40/300 revoked (13.3%)" in status.splitlines()
    error = refused("revoke_rows", "authtoken.Token", "--leaked", str(tmp_path / "other.txt"))
    assert str(error) == (
        f"run {run.pk} of authtoken.Token was planned from {path!r}, not from "
        f"{str(tmp_path / 'other.txt')!r}; resume it without --leaked, or --cancel it and "
        "plan again"
    )
    out, _ = command("revoke_rows", "authtoken.Token", "--cancel", "--yes")
    assert out.startswith(
        f"Cancelled run {run.pk} of authtoken.Token: its workers stop within a batch"
    )
    assert not RevocationKey.objects.exists()
    assert Token.objects.count() == 260


def test_a_bad_flag_combination_changes_nothing(tmp_path):
    make_tokens(3)
    assert str(refused("revoke_rows", "authtoken.Token", "--leaked-hashed")) == (
        "--leaked-hashed goes with --leaked FILE; add --leaked FILE or drop --leaked-hashed"
    )
    assert str(refused("revoke_rows", "authtoken.Token.key")) == (
        "'authtoken.Token.key' is not a model; expected app_label.Model"
    )
    assert str(refused("revoke_rows", "authtoken.Token", "--field", "nope", "--leaked", "x")) == (
        "--field 'nope' is not a field of authtoken.Token; name the column whose values the "
        "--leaked file holds"
    )
    assert Token.objects.count() == 3


def test_a_revocation_is_a_run_in_the_admin(client, tmp_path):
    keys = make_tokens(150)
    path = dump(tmp_path / "dump.txt", keys[:100])
    command("revoke_rows", "authtoken.Token", "--leaked", path, "--workers", "1")
    User.objects.create_superuser("operator", "op@example.com", "pw-for-tests")
    client.login(username="operator", password="pw-for-tests")
    page = client.get("/admin/rotator/run/").content.decode()
    assert "authtoken.Token (revoke_rows)" in page
    assert "100/100" in page and "finished" in page
    run = Run.objects.get()
    page = client.get(f"/admin/rotator/run/{run.pk}/change/").content.decode()
    assert page.count('<td class="field-rows_planned">') == 4
    assert not any(key in page for key in keys)


def test_knox_tokens_and_api_keys_are_revoked_by_their_stored_hashes(tmp_path):
    from knox.auth import TokenAuthentication as KnoxAuthentication
    from knox.models import AuthToken
    from rest_framework_api_key.models import APIKey

    user = User.objects.create(username="owner")
    tokens = [AuthToken.objects.create(user=user)[1] for _ in range(12)]
    digests = list(AuthToken.objects.order_by("created").values_list("digest", flat=True))
    keys = [APIKey.objects.create_key(name=f"key {i}") for i in range(9)]
    command("revoke_rows", "knox.AuthToken", "--leaked", dump(tmp_path / "d", digests[:8]))
    ids = [api_key.id for api_key, _ in keys]
    command(
        "revoke_rows", "rest_framework_api_key.APIKey", "--leaked", dump(tmp_path / "k", ids[:5])
    )
    assert sorted(AuthToken.objects.values_list("digest", flat=True)) == sorted(digests[8:])
    assert sorted(APIKey.objects.values_list("id", flat=True)) == sorted(ids[5:])

    def knox_user(token: str) -> User | None:
        request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token}")
        try:
            return KnoxAuthentication().authenticate(request)[0]
        except AuthenticationFailed:
            return None

    assert [knox_user(t) for t in tokens].count(user) == 4
    assert [knox_user(t) for t in tokens].count(None) == 8
    assert all(APIKey.objects.is_valid(secret) for _, secret in keys[5:])
    assert not any(APIKey.objects.is_valid(secret) for _, secret in keys[:5])
