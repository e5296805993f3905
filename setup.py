"""Package layout (everything else is in pyproject.toml): ``lowbit_core`` as it is, and the folders
``launch``, ``analysis`` and ``sweeps`` installed under the project's name as ``lowbit_sweeps.<folder>``.
The sub-packages are found, not listed, so a new report package cannot be left out of the wheel."""
from setuptools import find_packages, setup

MOVED = ("launch", "analysis", "sweeps")

packages = find_packages(include=["lowbit_core", "lowbit_core.*"]) + ["lowbit_sweeps"]
package_dir = {}
for folder in MOVED:
    package_dir[f"lowbit_sweeps.{folder}"] = folder
    packages += [f"lowbit_sweeps.{folder}"] + [f"lowbit_sweeps.{folder}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
