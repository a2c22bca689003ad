"""One fingerprint row per batch on PostgreSQL: ``FingerprintSet`` (arrays of keys and
digests), read back as rows through the view ``rotator_fingerprint_rows``.

A row per fingerprint (a heap tuple and a primary-key entry) was most of what
the proof cost. Elsewhere the table stays empty and ``Fingerprint`` is used.
"""

import django.db.models.deletion
from django.db import migrations, models

import rotator.models


def _views(apps, schema_editor, backward=False):
    from rotator.sql import builder_for

    builder = builder_for(schema_editor.connection)
    tables = [apps.get_model("rotator", name)._meta.db_table for name in ("Fingerprint", "FingerprintSet")]
    views = builder.proof_views(*tables)
    for forward, back in reversed(views) if backward else views:
        schema_editor.execute(back if backward else forward)


class Migration(migrations.Migration):

    dependencies = [
        ("rotator", "0009_cheaper_proof"),
    ]

    operations = [
        migrations.CreateModel(
            name="FingerprintSet",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("size", models.IntegerField(help_text="Rows fingerprinted: the arrays' length.")),
                ("keys", rotator.models.ProofArray(element="text", help_text="Primary keys, as text.")),
                ("digests", rotator.models.ProofArray(element="bigint", help_text="Their digests, in the same order.")),
                (
                    "run",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="fingerprint_sets",
                        to="rotator.run",
                    ),
                ),
            ],
        ),
        migrations.RunPython(_views, lambda apps, schema_editor: _views(apps, schema_editor, True)),
    ]
