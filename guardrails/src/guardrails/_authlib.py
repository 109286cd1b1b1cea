"""Quiet authlib's deprecation notices; imported before authlib by the modules that use it.

authlib announces future moves of APIs it still supports (its httpx glue, authlib.jose); they
are not the app's to fix and would drown the output of `make dev`. (Importing
authlib.deprecate installs an "always" filter; this one goes in front of it.)
"""

import warnings

from authlib.deprecate import AuthlibDeprecationWarning

warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
