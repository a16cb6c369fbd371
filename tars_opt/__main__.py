from tars_opt.cli.main import app

app(prog_name="tars-opt")
