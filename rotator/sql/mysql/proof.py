"""MariaDB's proof: one ``FingerprintSet`` row per batch, read back through two views.

A row per fingerprint (an InnoDB row and a primary-key entry each) was most of
what the proof cost on MariaDB: 5.0 s per million rows, against 1.9 s for one
row per batch (``set_sql``, from the batch's own copy of its window). A set keeps
its window's keys as a JSON array (``keys``) and their digests as one string of
``PROOF_HEX`` hex digits each, in the same order (``digests``, a LONGBLOB: a byte
offset finds the n-th digest at once, where a character offset into utf8mb4 text
would read from the start).
A digest is kept as its hex digits, never converted to a number: ``CONV`` was
half the cost of hashing.

- ``PROOF_ROWS`` (run, key, digest): the Fingerprint rows and the sets' keys
  unnested with ``JSON_TABLE``, each with the digest at its position: for
  --verify, which counts keys.
- ``PROOF_DIGESTS`` (run, digest): the sets' digests cut out by position with
  the Sequence engine (no JSON parsed; 0.14 s per million as a plain join, 1.2 s
  through the view, which MariaDB materializes): for the checks, which ask only
  whether a row's digest is one of the run's.

Fingerprint rows (written before migration 0011) are shown in the same hex
form. MySQL has neither the Sequence engine nor ``LONGBLOB`` digests here: it
keeps a Fingerprint row per row.
"""

from __future__ import annotations

from typing import Any

from rotator.errors import RotatorError
from rotator.sql.digests import PROOF_DIGESTS, PROOF_HEX, PROOF_ROWS, PROOF_TABLE

#: What a set keeps for a NULL value (no digest): never a run of hex digits.
BLANK = " " * PROOF_HEX
#: The Sequence engine's table the digests view numbers positions with: more than
#: any window holds (--batch-size is at most 100,000).
_POSITIONS = "seq_1_to_1000000"


def keyed_hex(col: str, uuid: bool = False) -> str:
    """SQL of the keyed fingerprint of ``col`` as its PROOF_HEX hex digits (binary);
    ``uuid``: the column is MariaDB's uuid type, whose text CONCAT makes by itself, the
    same as CAST ... AS CHAR at half the cost (the CAST was a third of a set's)."""
    text = col if uuid else f"CAST({col} AS CHAR)"
    # The key as a scalar subquery, evaluated once (no join the optimizer could misjudge).
    hexed = f"SHA2(CONCAT((SELECT k FROM {PROOF_TABLE}), {text}), 256)"
    return f"CAST(LEFT({hexed}, {PROOF_HEX}) AS BINARY)"


def _old_hex(digest: str) -> str:
    """A Fingerprint row's bigint digest as the sets keep it."""
    return f"CAST(LPAD(LOWER(CONV({digest}, 10, 16)), {PROOF_HEX}, '0') AS BINARY)"


#: The session variables a set is built in before its INSERT (``set_sql``).
_SET_VARIABLES = "@rotator_set_size, @rotator_set_keys, @rotator_set_digests"


def set_sql(sets: str, window: str, integer_key: bool, uuid: bool) -> tuple[str, str]:
    """One batch's window as one FingerprintSet row, from the batch's own copy of it
    (``batch.window_sql``: keys and old values, numbered): no second read of the table,
    and exactly the rows the batch goes on to rotate. Two statements: the set built in
    session variables, then a plain INSERT of them (parameter: the run). An INSERT ...
    SELECT would hold the table's AUTO-INC lock while it hashed (innodb_autoinc_lock_mode
    1, the default), and the workers' sets would wait for each other.

    Both lists are built by one pass over the window's rows, so they line up (an ORDER
    BY in each GROUP_CONCAT sorts twice: it cost more than the hashing). A list longer
    than ``group_concat_max_len`` (raised for the session, see ``SESSION_SQL``) is cut,
    with a warning; one longer than ``max_allowed_packet`` is NULL, and the NOT NULL
    column refuses it; digests not ``PROOF_HEX`` per row are NULL too: a set is complete
    or not written (``refuse_cut``); ``uuid``: as ``keyed_hex``."""
    key = "w.k" if integer_key else "JSON_QUOTE(CONVERT(w.k USING utf8mb4))"
    digest = f"COALESCE({keyed_hex('w.old', uuid)}, '{BLANK}')"
    build = (
        f"SELECT COUNT(*), CONCAT('[', GROUP_CONCAT({key}), ']'), "
        f"GROUP_CONCAT({digest} SEPARATOR '') INTO {_SET_VARIABLES} FROM {window} AS w"
    )
    insert = (
        f"INSERT INTO {sets} (run_id, size, `keys`, digests) VALUES (%s, @rotator_set_size, "
        "@rotator_set_keys, IF(LENGTH(@rotator_set_digests) = "
        f"{PROOF_HEX} * @rotator_set_size, @rotator_set_digests, NULL))"
    )
    return build, insert


#: What a set cut short raises: a NULL into a NOT NULL column (an error where the server
#: is strict, a warning and '' elsewhere), a list cut by ``group_concat_max_len``, a
#: string past ``max_allowed_packet``. Other warnings (an unsafe statement for the binary
#: log, say) leave the set whole.
_CUT = {1048, 1260, 1301}


def incomplete() -> RotatorError:
    return RotatorError(
        "a batch's fingerprints did not fit in one row (the server's group_concat_max_len "
        "or max_allowed_packet): pass a smaller --batch-size"
    )


def refuse_cut(cur: Any, raw: Any) -> None:
    """After each statement of a set (on a server that is not strict, its INSERT too): a
    set cut short is refused (the batch rolls back), never kept as a proof with rows
    missing."""
    if not raw.warning_count():
        return
    cur.execute("SHOW WARNINGS")
    if {int(code) for _, code, _ in cur.fetchall()} & _CUT:
        raise incomplete()


def is_cut(exc: BaseException) -> bool:
    """Whether ``exc`` (the driver's) is a strict server refusing a set cut short."""
    return bool(getattr(exc, "args", None)) and exc.args[0] in _CUT


#: Once per session, before a batch writes a set: room for 100,000 keys of 255 characters.
SESSION_SQL = "SET SESSION group_concat_max_len = GREATEST(@@group_concat_max_len, 1 << 30)"


def _digest_at(position: str) -> str:
    """The set ``s``'s digest at ``position`` (from 1), NULL for a NULL value."""
    start = f"{PROOF_HEX} * {position} - {PROOF_HEX - 1}"
    return f"NULLIF(SUBSTRING(s.digests, {start}, {PROOF_HEX}), '{BLANK}')"


def census_sql(fp: str, key: str, table: str, pk: str, col: str) -> str:
    """--verify's counts of fingerprints, rows, deleted, born and NULL rows (the order of
    ``verification.CENSUS``) in one statement: the keys' JSON is parsed once, not once
    per count (parameter: the proof's run). Distinct rows found (integers), and distinct
    keys only among those not found: a run restarted with --restart fingerprints some
    rows twice, and distinct keys as text over every fingerprint cost three times as much
    (15 s, against 3.6 s, at 1M rows)."""
    return (
        "SELECT c.found + c.gone, r.n, c.gone, r.n - c.found, "
        f"(SELECT count(*) FROM {table} WHERE {col} IS NULL) FROM ("
        f"SELECT count(DISTINCT t.{pk}) AS found, "
        f"count(DISTINCT IF(t.{pk} IS NULL, f.{key}, NULL)) AS gone "
        f"FROM {fp} AS f LEFT JOIN {table} AS t ON t.{pk} = f.{key} WHERE f.run_id = %s) AS c, "
        f"(SELECT count(*) AS n FROM {table}) AS r"
    )


def views(fingerprints: str, sets: str) -> list[tuple[str, str]]:
    """DDL (forward, backward) of migration 0011 on MariaDB."""
    # The keys in the connection's utf8mb4 collation, as Fingerprint's were: a join
    # with the table's own key (--verify's census) stays an index lookup per key.
    key = "CONVERT({} USING utf8mb4)"
    old = (
        f"SELECT run_id, {key.format('`key`')} AS `key`, {_old_hex('digest')} AS digest "
        f"FROM {fingerprints}"
    )
    rows = (
        f"CREATE VIEW {PROOF_ROWS} AS {old} UNION ALL "
        f"SELECT s.run_id, {key.format('j.`key`')}, {_digest_at('j.n')} FROM {sets} AS s, "
        "JSON_TABLE(s.`keys`, '$[*]' COLUMNS (n FOR ORDINALITY, `key` VARCHAR(255) PATH '$')) AS j"
    )
    digests = (
        f"CREATE VIEW {PROOF_DIGESTS} AS SELECT run_id, {_old_hex('digest')} AS digest "
        f"FROM {fingerprints} UNION ALL SELECT s.run_id, {_digest_at('q.seq')} FROM {sets} AS s "
        f"JOIN {_POSITIONS} AS q ON q.seq <= s.size"
    )
    blob = (
        f"ALTER TABLE {sets} MODIFY digests LONGBLOB NOT NULL",
        f"ALTER TABLE {sets} MODIFY digests LONGTEXT NOT NULL",
    )
    return [
        blob,
        (rows, f"DROP VIEW {PROOF_ROWS}"),
        (digests, f"DROP VIEW {PROOF_DIGESTS}"),
    ]


# Seals (models.Seal): where MariaDB has no xmin, a batch's keyed checksum of its range.


def _checksum(pk: str, col: str) -> str:
    """64 bits of a row's key and value: CRC32 of both, in both orders (NULL for NULL)."""
    return f"CRC32(CONCAT({pk}, ' ', {col})) << 32 | CRC32(CONCAT({col}, ' ', {pk}))"


def _seal(pk: str, col: str) -> str:
    """The seal of the rows selected: a keyed hash (the run's key, as the fingerprints)
    of their count, their non-NULL count and the XOR of their checksums."""
    summary = (
        f"CONCAT((SELECT k FROM {PROOF_TABLE}), ' ', COUNT(*), ' ', COUNT({col}), ' ', "
        f"COALESCE(BIT_XOR({_checksum(pk, col)}), 0))"
    )
    return f"LEFT(SHA2({summary}, 256), 32)"


def _range(pk: str, lower: bool) -> str:
    return f"{pk} > %s AND {pk} <= %s" if lower else f"{pk} <= %s"


def seal_sql(pk: str, col: str, table: str, lower: bool) -> str:
    """The rows of the range ``(lo, hi]`` (parameters: lo where ``lower``, hi) and its
    seal: a plain read, which locks nothing (the batch already holds its rows). The
    Seal row is a plain INSERT of its own: an INSERT ... SELECT would hold the seals'
    AUTO-INC lock while it read the range."""
    return f"SELECT COUNT(*), {_seal(pk, col)} FROM {table} WHERE {_range(pk, lower)}"


def seals_sql(pk: str, col: str, table: str, lowers: list[bool]) -> str:
    """The seals of several ranges at once, numbered from 0 (parameters: each range's
    bounds in turn, lo only where ``lowers`` says): each is a range scan of the primary
    key."""
    return " UNION ALL ".join(
        f"SELECT {i}, {_seal(pk, col)} FROM {table} WHERE {_range(pk, lower)}"
        for i, lower in enumerate(lowers)
    )


def stale_in_sql(key_text: str, digest: str, table: str, pk: str, where: str, limit: int) -> str:
    """The stale check over the rows ``where`` selects only (parameter after its own: the
    proof's run). The run's digests are materialized once (``in_to_exists`` off): a few
    rows must not make MariaDB cut the digests out of every set once per row."""
    return (
        "SET STATEMENT optimizer_switch='in_to_exists=off' FOR "
        f"SELECT {key_text} FROM {table} t WHERE ({where}) AND {digest} IN "
        f"(SELECT digest FROM {PROOF_DIGESTS} WHERE run_id = %s AND digest IS NOT NULL) "
        f"ORDER BY t.{pk} LIMIT {int(limit)}"
    )


def gaps_where(pk: str, gaps: list[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """The condition selecting keys in any of ``gaps`` ``(lo, hi]`` (None: unbounded)."""
    terms, params = [], []
    for lo, hi in gaps:
        term = [f"{pk} > %s"] * (lo is not None) + [f"{pk} <= %s"] * (hi is not None)
        terms.append(" AND ".join(term) or "TRUE")
        params += [b for b in (lo, hi) if b is not None]
    return " OR ".join(f"({t})" for t in terms) or "FALSE", params
