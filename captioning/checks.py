"""System checks of settings that `manage.py check` and every start run."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register()
def broker_visibility_check(app_configs, **kwargs):
    """Warn when Redis could deliver a task again while it is still within its time limit."""
    longest = max(settings.CAPTION_TIME_LIMIT, settings.EVALUATION_TIME_LIMIT)
    if settings.BROKER_VISIBILITY_TIMEOUT > longest:
        return []
    return [
        Warning(
            f"BROKER_VISIBILITY_TIMEOUT ({settings.BROKER_VISIBILITY_TIMEOUT} s) is not above the "
            f"longest task time limit ({longest} s), so Redis may deliver a running task to a "
            "second worker.",
            hint="Raise BROKER_VISIBILITY_TIMEOUT above CAPTION_TIME_LIMIT and EVALUATION_TIME_LIMIT.",
            id="captioning.W001",
        )
    ]


@register()
def caption_time_limits_check(app_configs, **kwargs):
    """Warn when the soft limit would never fire before the hard one kills the process."""
    if settings.CAPTION_SOFT_TIME_LIMIT < settings.CAPTION_TIME_LIMIT:
        return []
    return [
        Warning(
            f"CAPTION_SOFT_TIME_LIMIT ({settings.CAPTION_SOFT_TIME_LIMIT} s) is not below "
            f"CAPTION_TIME_LIMIT ({settings.CAPTION_TIME_LIMIT} s), so a slow job is killed "
            "without a message on the job.",
            hint="Set the soft limit some seconds below the hard one.",
            id="captioning.W002",
        )
    ]


@register(Tags.security, deploy=True)
def secret_key_source_check(app_configs, **kwargs):
    """Warn, under `check --deploy`, when SECRET_KEY is the key generated for local runs."""
    if settings.SECRET_KEY_FROM_ENVIRONMENT:
        return []
    return [
        Warning(
            "SECRET_KEY is not set, so the site signs sessions with the key generated into "
            "var/secret_key for local runs.",
            hint="Set SECRET_KEY to at least 50 random characters, for example the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'.",
            id="captioning.W003",
        )
    ]
