"""mailtriage: email-to-ticket intake for a levelled support desk."""

__version__ = "0.1.0"
