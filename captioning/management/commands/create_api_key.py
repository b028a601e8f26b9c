"""Print an API key for a user, creating the user and the key when needed."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print the API key of a user, creating the user (without a password) and the key "
        "when needed. The key is the last line of the output."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="Name of the user who owns the key.")
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Replace the user's existing key with a new one; the old key stops working.",
        )

    def handle(self, *args, username, rotate, **options):
        user_model = get_user_model()
        user, user_created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: username})
        if user_created:
            # Such a user authenticates with the key only, until someone sets a password.
            user.set_unusable_password()
            user.save(update_fields=["password"])
            self.stdout.write(f"Created user {username}.")

        if rotate:
            Token.objects.filter(user=user).delete()
        token, token_created = Token.objects.get_or_create(user=user)
        state = "New" if token_created else "Existing"
        self.stdout.write(f"{state} API key for {username}; send it as 'Authorization: Token KEY':")
        self.stdout.write(token.key)
