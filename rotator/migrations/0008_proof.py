"""Keyed fingerprints (see Fingerprint): the unkeyed ones of earlier versions are deleted.

An unsalted sha256 of a short value can be reversed from a copy of the database
by trying every value, so those fingerprints were a copy of the leak; they are
not kept. Runs planned before this migration verify as "no fingerprints".
"""

from django.db import migrations, models


def forget_unkeyed(apps, schema_editor):
    apps.get_model("rotator", "Fingerprint").objects.using(schema_editor.connection.alias).all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("rotator", "0007_leases"),
    ]

    operations = [
        migrations.RunPython(forget_unkeyed, migrations.RunPython.noop),
        migrations.RemoveField(model_name="fingerprint", name="digest"),
        migrations.AddField(
            model_name="fingerprint",
            name="digest",
            field=models.BigIntegerField(
                help_text="First 60 bits of sha256(run key || value as text); NULL for NULL.",
                null=True,
            ),
        ),
        migrations.AddConstraint(
            model_name="fingerprint",
            constraint=models.UniqueConstraint(
                fields=("run", "key"), name="rotator_fingerprint_run_key"
            ),
        ),
    ]
