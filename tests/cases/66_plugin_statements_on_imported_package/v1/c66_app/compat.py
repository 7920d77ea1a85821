"""Compatibility plugin: configures c66_app.codecs when imported."""

import json
import pickle

import c66_app
import c66_app.codecs

c66_app.codecs.MAX_SIZE = 1 << 16
c66_app.codecs.LOADERS["json"] = json.loads
c66_app.codecs.LOADERS["pickle"] = pickle.loads
c66_app.PLUGINS = ("compat",)
