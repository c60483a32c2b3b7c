"""Package layout that pyproject.toml cannot express: ship the top-level ``specs/`` folder.

The repository keeps the normative specification data (policies, suites, eval tasks, JSON
Schemas, openapi.json, test vectors) in ``specs/``; installs get the same files as the data
package ``tripwire_specs``, read through ``importlib.resources`` (node/home/resources.py).
Which files it ships, and everything else, is configured in pyproject.toml. See docs/adr/0009-specs-as-package-data.md.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["protocol*", "node*", "reports*"]), "tripwire_specs"],
    package_dir={"tripwire_specs": "specs"},
)
