from django.db import migrations, models


class Migration(migrations.Migration):
    """Which input placed each point (prompt events) or painted each applied region (trials)."""

    dependencies = [
        ("studies", "0012_i21_platform"),
    ]

    operations = [
        migrations.AddField(
            model_name="promptevent",
            name="input",
            field=models.CharField(blank=True, default="", max_length=10),
        ),
        migrations.AddField(
            model_name="interventiontrial",
            name="input",
            field=models.CharField(blank=True, default="", max_length=10),
        ),
    ]
