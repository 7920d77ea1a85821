"""Compatibility plugin: configures c66b_app.codecs when imported."""

import pickle

import c66b_app.codecs

c66b_app.codecs.LOADERS = dict(c66b_app.codecs.LOADERS)
c66b_app.codecs.MAX_SIZE = c66b_app.codecs.MAX_SIZE * 4
