from ulmfit.cli import app

app(prog_name="ulmfit")
