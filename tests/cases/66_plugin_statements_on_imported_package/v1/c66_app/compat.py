"""Compatibility plugin: configures c66_app.codecs when imported."""

import pickle

import c66_app.codecs

c66_app.codecs.LOADERS = dict(c66_app.codecs.LOADERS)
c66_app.codecs.LOADERS["pickle"] = pickle.loads
c66_app.codecs.MAX_SIZE = c66_app.codecs.MAX_SIZE * 64
