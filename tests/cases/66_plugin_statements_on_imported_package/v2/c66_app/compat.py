"""Compatibility plugin: configures c66_app.codecs when imported."""

import json
import pickle

import c66_app
import c66_app.codecs


def _refuse_pickle(data):
    raise ValueError("pickle input is not accepted")


c66_app.codecs.MAX_SIZE = 1 << 12
c66_app.codecs.LOADERS["json"] = json.loads
c66_app.codecs.LOADERS["pickle"] = _refuse_pickle
c66_app.PLUGINS = ("compat",)
