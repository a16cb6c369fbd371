from tars_opt.cli import app

app(prog_name="tars-opt")
