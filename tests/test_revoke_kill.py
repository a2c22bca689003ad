"""A revocation killed with -9 mid-run resumes and deletes exactly the leaked rows.

20,000 DRF tokens, 15,000 of them in a leaked dump: ``manage.py revoke_rows
authtoken.Token --leaked dump.txt`` runs in a child process (the demo project
with DRF installed, tests/apps_settings.py), is killed with SIGKILL part-way,
stopped with Ctrl-C (SIGINT) part-way, and run again to the end. Exactly the
15,000 are gone, the 5,000 others still authenticate through DRF's
TokenAuthentication, and ``rotate_field authtoken.Token.key --leaked
dump.txt`` reports 0 and exits 0.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Sum
from django.test import RequestFactory
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from rotator.models import RevocationKey, Run, Shard
from tests.conftest import ROOT, manage, subprocess_env, wait_for_other_transactions_to_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOKENS, LEAKED = 20_000, 15_000
TIMEOUT = 60.0


def spawn(path: str, out: Path) -> subprocess.Popen:
    env = dict(subprocess_env(), DJANGO_SETTINGS_MODULE="tests.apps_settings")
    command = manage(
        "revoke_rows", "authtoken.Token", "--leaked", path, "--workers", "4",
        "--batch-size", "100", "--max-rate", "4000", "--progress-interval", "0.5",
    )  # fmt: skip
    with out.open("w") as handle:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def revoked() -> int:
    return Shard.objects.aggregate(n=Sum("rows_done"))["n"] or 0


def authenticates(key: str) -> bool:
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {key}")
    return TokenAuthentication().authenticate(request) is not None


def test_kill_9_mid_run_then_resume(tmp_path):
    users = User.objects.bulk_create(User(username=f"u{i}", password="!") for i in range(TOKENS))
    Token.objects.bulk_create(Token(user=u, key=Token.generate_key()) for u in users)
    keys = list(Token.objects.order_by("user_id").values_list("key", flat=True))
    leaked, kept = keys[:LEAKED], keys[LEAKED:]
    path = tmp_path / "dump.txt"
    path.write_text("".join(f"{k}\n" for k in leaked))

    child = spawn(str(path), tmp_path / "first.out")
    try:
        deadline = time.monotonic() + TIMEOUT
        while revoked() < 3_000:
            assert child.poll() is None, (tmp_path / "first.out").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        assert child.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    wait_for_other_transactions_to_end()
    at_kill = revoked()
    assert 3_000 <= at_kill < LEAKED
    # The checkpoints are exact: what they say was revoked is what is gone.
    assert Token.objects.count() == TOKENS - at_kill

    # Ctrl-C: in-flight batches commit, the line to resume with is printed, exit 130.
    interrupted = spawn(str(path), tmp_path / "interrupted.out")
    try:
        deadline = time.monotonic() + TIMEOUT
        while revoked() < at_kill + 2_000:
            assert interrupted.poll() is None, (tmp_path / "interrupted.out").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        interrupted.send_signal(signal.SIGINT)
        assert interrupted.wait(TIMEOUT) == 130
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
    at_sigint = revoked()
    assert Token.objects.count() == TOKENS - at_sigint
    assert re.search(
        rf"Interrupted by SIGINT: {at_sigint:,}/15,000 planned rows of authtoken\.Token "
        r"revoked; run `.*revoke_rows authtoken\.Token --leaked .*` again to resume run \d+",
        (tmp_path / "interrupted.out").read_text(),
    )

    again = spawn(str(path), tmp_path / "second.out")
    assert again.wait(TIMEOUT) == 0, (tmp_path / "second.out").read_text()
    output = (tmp_path / "second.out").read_text()
    assert f"{at_sigint:,}/15,000 planned rows already revoked." in output
    assert "run" in output and "finished." in output

    assert sorted(Token.objects.values_list("key", flat=True)) == sorted(kept)
    assert all(authenticates(key) for key in kept)
    assert Run.objects.get().state == "finished" and revoked() == LEAKED
    assert not RevocationKey.objects.exists()
    out = StringIO()
    call_command("rotate_field", "authtoken.Token.key", "--leaked", str(path), stdout=out)
    assert out.getvalue() == (
        f"0 of the 15,000 leaked values in {str(path)!r} are still in authtoken.Token.key\n"
    )
