"""cni-render: a CNI plugin whose datapath lives in editable Jinja2 templates."""

__version__ = "0.1.0"
