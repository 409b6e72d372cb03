"""Pruning methods on one interface: the six papers and the baselines (imported to register)."""

from prunerep.methods import baselines as baselines
from prunerep.methods import dais as dais
from prunerep.methods import dsa as dsa
from prunerep.methods import fpgm as fpgm
from prunerep.methods import functionality as functionality
from prunerep.methods import gdp as gdp
from prunerep.methods import greg as greg
from prunerep.methods import sensitivity as sensitivity
from prunerep.methods import wgates as wgates
from prunerep.methods.base import Budget as Budget
from prunerep.methods.base import MethodContext as MethodContext
from prunerep.methods.base import PruningMethod as PruningMethod
from prunerep.methods.base import get_method as get_method
from prunerep.methods.base import list_methods as list_methods
from prunerep.methods.base import register_method as register_method
