# The count sources of PointPrompt's released benchmark protocol (docs/pointprompt.md); choices
# only: no data changes, old rows keep their sources.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0009_practice_assignment"),
    ]

    operations = [
        migrations.AlterField(
            model_name="baselineresult",
            name="count_source",
            field=models.CharField(
                choices=[
                    ("human_best", "Human best timestep"),
                    ("fixed", "Fixed count"),
                    ("point_nums", "PointPrompt's released table"),
                    ("human_mean", "Mean of the human best-timestep counts"),
                    ("one_point", "1 + 1 (released _1pt mode)"),
                ],
                max_length=20,
            ),
        ),
    ]
