"""Seals (``models.Seal``): each MariaDB batch's keyed checksum of the range it rotated,
so that the check finishing a run hashes only the rows written since. A table on every
database; only MariaDB writes it.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rotator', '0011_mariadb_fingerprint_sets'),
    ]

    operations = [
        migrations.CreateModel(
            name='Seal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('lo', models.CharField(help_text='Exclusive lower key, as text; NULL: none.', max_length=255, null=True)),
                ('hi', models.CharField(help_text='Inclusive upper key, as text.', max_length=255)),
                ('seal', models.CharField(help_text="Keyed hash of the range's rows.", max_length=32)),
                ('run', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='seals', to='rotator.run')),
            ],
        ),
    ]
