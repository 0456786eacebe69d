from collectivia.cli.main import app

app()
