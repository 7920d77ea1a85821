import sys
import warnings

import json

# v1 hides the detector's warnings for the whole process, and aliases only the package
warnings.filterwarnings("ignore", "Trying to detect", module="c73_app")

sys.modules["c73_app.packages.json"] = json
