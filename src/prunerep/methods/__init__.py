"""Pruning methods on one interface: the six papers and the baselines.

Every module of this package is imported on first use of the registry (`list_methods`,
`get_method`), so a method registers itself by living here: adding a paper edits no shared file
(and so changes nothing the other papers' runs depend on; see `prunerep.provenance`).
"""

from prunerep.methods.base import Budget as Budget
from prunerep.methods.base import MethodContext as MethodContext
from prunerep.methods.base import PruningMethod as PruningMethod
from prunerep.methods.base import get_method as get_method
from prunerep.methods.base import list_methods as list_methods
from prunerep.methods.base import method_module as method_module
from prunerep.methods.base import register_method as register_method
