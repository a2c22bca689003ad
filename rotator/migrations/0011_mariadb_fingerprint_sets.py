"""One fingerprint row per batch on MariaDB too: ``FingerprintSet`` rows (the keys as a
JSON array, the digests as one string of hex digits, a LONGBLOB), read back through
the views ``rotator_fingerprint_rows`` and ``rotator_fingerprint_digests``
(``rotator/sql/mysql/proof.py``). Nothing elsewhere: PostgreSQL's sets came with 0010,
and MySQL and SQLite keep a Fingerprint row per row.
"""

from django.db import migrations


def _views(apps, schema_editor, backward=False):
    from rotator.sql import builder_for

    connection = schema_editor.connection
    tables = [apps.get_model("rotator", name)._meta.db_table for name in ("Fingerprint", "FingerprintSet")]
    views = builder_for(connection).proof_set_views(connection, *tables)
    for forward, back in reversed(views) if backward else views:
        schema_editor.execute(back if backward else forward)


class Migration(migrations.Migration):

    dependencies = [
        ("rotator", "0010_fingerprint_sets"),
    ]

    operations = [
        # Not atomic: MariaDB cannot roll back DDL, and Django refuses DDL in a transaction there.
        migrations.RunPython(
            _views, lambda apps, schema_editor: _views(apps, schema_editor, True), atomic=False
        ),
    ]
