# One image for the web tier and the Celery workers; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=captionsite.settings \
    STATIC_MANIFEST=1 \
    MEDIA_ROOT=/data/media

WORKDIR /app

# Dependencies first, so that a code change reuses this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Hashed, compressed static files for whitenoise. The key only satisfies the settings
# during the build; containers get theirs from the environment.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

# An unprivileged user owns only what it writes: uploads and local state. A named
# volume mounted at /data/media starts with this ownership.
RUN useradd --create-home --uid 1000 captionsite \
    && mkdir -p /data/media /app/var \
    && chown captionsite:captionsite /data/media /app/var
USER captionsite

EXPOSE 8000
CMD ["gunicorn", "captionsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
