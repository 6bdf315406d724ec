from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from studies.core import file_cleanup
        from studies.core.kinds import load_kinds

        load_kinds()
        file_cleanup.connect()  # a row's files go with it, after the commit
