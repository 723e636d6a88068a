"""``python -m edgefleet.kubectl_plugin``: the same as ``kubectl edgefleet``."""

from __future__ import annotations

import sys

from edgefleet.kubectl_plugin.main import main

sys.exit(main())
