"""Tables, figures, paper numbers and notebook set-up: what every notebook uses to report."""

from prunerep.reporting.notebook import NotebookContext as NotebookContext
from prunerep.reporting.notebook import recipe_summary as recipe_summary
from prunerep.reporting.notebook import setup_notebook as setup_notebook
from prunerep.reporting.notebook import show_verdicts as show_verdicts
from prunerep.reporting.paper import paper_numbers as paper_numbers
from prunerep.reporting.tables import format_table as format_table
from prunerep.reporting.tables import save_figure as save_figure
from prunerep.reporting.tables import write_metrics as write_metrics
from prunerep.reporting.tables import write_table as write_table
