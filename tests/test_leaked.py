"""--leaked FILE counts how many values of a leaked dump are still in the table."""

from __future__ import annotations

import hashlib
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import fill, run
from tests.support import tokens
from tests.testapp.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


def leaked(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("regenerate_token_async", "--leaked", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def dump(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_every_value_counts_before_the_run_and_none_after(tmp_path):
    fill(400)
    path = dump(tmp_path / "dump.txt", [str(t) for t in tokens().values()])
    out, refused = leaked(path)
    assert out == f"400 of the 400 leaked values in {path!r} are still in tickets.Ticket.token\n"
    assert refused is not None and refused.returncode == 1
    assert str(refused) == (
        "400 leaked values are still in tickets.Ticket.token; "
        "rotate them: python manage.py regenerate_token_async"
    )
    run("regenerate_token_async")
    out, refused = leaked(path)
    assert out == f"0 of the 400 leaked values in {path!r} are still in tickets.Ticket.token\n"
    assert refused is None


def test_values_are_compared_the_way_the_column_stores_them(tmp_path):
    fill(10)
    spelled = [t.hex.upper() if i % 2 else f"{{{t}}}" for i, t in enumerate(tokens().values())]
    path = dump(tmp_path / "odd.txt", ["", *spelled[:7], "   "])
    out, refused = leaked(path)
    assert out.startswith("7 of the 7 leaked values")


def test_a_csv_column(tmp_path):
    fill(20)
    values = list(tokens().values())[:5]
    path = tmp_path / "dump.csv"
    path.write_text("id,token,note\n" + "".join(f'{i},{t},"a, b"\n' for i, t in enumerate(values)))
    out, refused = leaked(str(path), "--leaked-column", "token")
    assert out.startswith("5 of the 5 leaked values")
    out, refused = leaked(str(path), "--leaked-column", "secret")
    assert str(refused) == (
        f"--leaked-column 'secret' is not a column of {str(path)!r}: none of the 3 fields of "
        "its first line (the header) is 'secret'"
    )
    # A file without a header: its first line is a value, never shown.
    secret = str(values[0])
    path.write_text(f"{secret}\n")
    out, refused = leaked(str(path), "--leaked-column", "token")
    assert secret not in str(refused) and "none of the 1 fields" in str(refused)


def test_sha256_hex_lines(tmp_path):
    fill(30)
    hashed = [hashlib.sha256(str(t).encode()).hexdigest() for t in tokens().values()]
    path = dump(tmp_path / "hashed.txt", hashed[:12] + ["0" * 64])
    out, refused = leaked(path, "--leaked-hashed")
    assert out.startswith("12 of the 13 leaked values")
    run("regenerate_token_async")
    out, refused = leaked(path, "--leaked-hashed")
    assert out.startswith("0 of the 13 leaked values") and refused is None


def test_a_bad_line_is_named_by_its_number_never_its_value(tmp_path):
    fill(5)
    good = [str(t) for t in tokens().values()]
    path = dump(tmp_path / "bad.txt", [*good[:2], "not-a-uuid-but-secret", good[2]])
    out, refused = leaked(path)
    assert str(refused) == (
        f"line 3 of {path!r} is not a valid UUIDField for tickets.Ticket.token; fix or remove "
        "that line (use --leaked-column for a CSV, --leaked-hashed for sha256 hex)"
    )
    assert "secret" not in str(refused) + out
    out, refused = leaked(path, "--leaked-hashed")
    assert str(refused).startswith(f"line 1 of {path!r} is not a sha256 in hex (64 hex digits)")


def test_a_missing_file_is_one_line(tmp_path):
    out, refused = leaked(str(tmp_path / "nope.txt"))
    assert str(refused) == (
        f"cannot read --leaked file {str(tmp_path / 'nope.txt')!r}: No such file or directory"
    )


def test_leaked_flags_need_leaked(tmp_path):
    with pytest.raises(CommandError, match=r"^--leaked-hashed goes with --leaked FILE"):
        call_command("regenerate_token_async", "--leaked-hashed", "--status")


def test_string_secrets(tmp_path):
    ApiKey.objects.bulk_create(ApiKey() for _ in range(20))
    keys = list(ApiKey.objects.values_list("key", flat=True))
    path = dump(tmp_path / "keys.txt", keys[:4])
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_field", "testapp.ApiKey.key", "--leaked", path, stdout=out)
    assert out.getvalue().startswith("4 of the 4 leaked values")


def test_a_line_that_is_not_utf8_is_one_line_with_its_number(tmp_path):
    fill(3)
    good = [str(t).encode() for t in tokens().values()]
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"\n".join([good[0], "caf\xe9-secret".encode("latin-1"), good[1]]) + b"\n")
    out, refused = leaked(str(path))
    assert str(refused) == (
        f"line 2 of {str(path)!r} is not UTF-8 text; convert the file (e.g. iconv -t UTF-8) "
        "or fix that line"
    )
    assert out == ""


def test_a_nul_byte_is_one_line_with_its_number(tmp_path):
    fill(3)
    good = [str(t).encode() for t in tokens().values()]
    path = tmp_path / "nul.txt"
    for header, extra in ((b"", ()), (b"token\n", ("--leaked-column", "token"))):
        path.write_bytes(header + b"\n".join([good[0], b"sec\0ret", good[1]]) + b"\n")
        out, refused = leaked(str(path), *extra)
        number = 3 if header else 2
        assert str(refused) == (
            f"line {number} of {str(path)!r} holds a NUL byte; a dump is text, one value per "
            "line: fix or remove that line"
        )


def test_a_line_past_the_bound_is_refused_by_number(tmp_path):
    from rotator.service.dumpfile import MAX_LINE

    fill(3)
    good = [str(t) for t in tokens().values()]
    path = tmp_path / "long.txt"
    path.write_text(f"{good[0]}\n{'s' * (MAX_LINE + 1)}\n{good[1]}\n")
    out, refused = leaked(str(path))
    assert str(refused) == (
        f"line 2 of {str(path)!r} is longer than 65,536 bytes; a dump holds one value per "
        "line: check that this is the right file"
    )
    # No newline at all: refused once the bound is passed, not read to the end.
    path.write_text("s" * (4 * MAX_LINE))
    out, refused = leaked(str(path))
    assert str(refused).startswith(f"line 1 of {str(path)!r} is longer than 65,536 bytes")
    # A CSV record spread over quoted newlines is bounded the same way.
    path.write_text('id,token\n1,"' + "s\n" * MAX_LINE + '"\n')
    out, refused = leaked(str(path), "--leaked-column", "token")
    assert re.fullmatch(
        rf"line \d+ of {re.escape(repr(str(path)))} is longer than 65,536 .*", str(refused)
    )


def test_a_value_longer_than_the_column_is_refused_before_the_database_sees_it(tmp_path):
    ApiKey.objects.bulk_create(ApiKey() for _ in range(3))
    keys = list(ApiKey.objects.values_list("key", flat=True))
    path = dump(tmp_path / "keys.txt", [keys[0], "x" * 65 + "secret", keys[1]])
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("rotate_field", "testapp.ApiKey.key", "--leaked", path, stdout=out)
    assert str(refused.value) == (
        f"line 2 of {path!r} is longer than testapp.ApiKey.key holds (64 characters); "
        "fix or remove that line"
    )
    assert out.getvalue() == ""
