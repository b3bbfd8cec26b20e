"""ament_python package `mtml` (the ROS 2 node) plus the pure-PyTorch library `mtml_core`."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtml"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["mtml", "mtml.*", "mtml_core", "mtml_core.*", "training", "training.*"]),
    package_data={
        "mtml_core": ["assets/default/*", "data/environments/*.yaml"],
        "mtml": ["config/*.xml"],
        "training": ["configs/*.yaml"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="mtml developers",
    maintainer_email="dev@mtml.invalid",
    description="Multi-task meta-learning perception (scene class, depth, normals, vanishing points).",
    license="MIT",
    entry_points={
        "console_scripts": [
            "perception_node = mtml.perception_node:main",
            "sim_camera = mtml.sim_camera:main",
            "bag_camera = mtml.bag_camera:main",
            "mtml-synth = mtml_core.data.cli:main",
            "mtml-train = training.train:main",
            "mtml-eval = training.evaluate:main",
            "mtml-export = training.export:main",
        ],
    },
)
