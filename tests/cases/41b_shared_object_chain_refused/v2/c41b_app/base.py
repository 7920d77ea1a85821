SCHEMES = ["http"]
