from mailtriage.cli import run

run()
