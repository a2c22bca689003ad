"""A cheaper proof: fingerprints lose their unique (run, key) index; writers are kept.

The unique index was probed for every fingerprinted row and made fingerprints
cost +80% of a run; the checks read all of a run's fingerprints, as a set. ``Writer`` keeps the transactions that wrote a run's rows on
PostgreSQL, so the check that finishes a run hashes only the rows written since.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("rotator", "0008_proof"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="fingerprint", name="rotator_fingerprint_run_key"),
        migrations.CreateModel(
            name="Writer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("xid", models.BigIntegerField(help_text="The rows' xmin: the (sub)transaction's 32-bit id.")),
                ("top", models.BigIntegerField(help_text="The top transaction's 64-bit id (txid_current()).")),
                (
                    "run",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="writers",
                        to="rotator.run",
                    ),
                ),
            ],
        ),
    ]
