"""The project's module layout, read from the source (ast, nothing imported):

- no import cycle among the top-level modules (an import anywhere in a module counts, also one inside a
  function: a late import still ties the two modules together);
- no library module imports train.py: inference, export, evaluation and the light tools reach a run
  directory through checkpoints.py, not through the training program.
"""
import ast
import glob
import os

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_modules():
    """Names of the top-level modules: set of str."""
    return {os.path.basename(path)[:-len('.py')] for path in glob.glob(os.path.join(REPO_DIR, '*.py'))}


def imports_of(path, modules):
    """The project modules a source file imports, anywhere in it: set of str."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names & modules


def import_graph():
    """dict module -> set of the project modules it imports."""
    modules = project_modules()
    return {name: imports_of(os.path.join(REPO_DIR, name + '.py'), modules) - {name} for name in modules}


def find_cycle(graph):
    """One import cycle as a list [a, b, ..., a], or None (depth-first search)."""
    state = {}  # module -> 'open' while on the search path, 'done' once all it reaches is explored
    path = []

    def visit(node):
        state[node] = 'open'
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 'open':
                return path[path.index(child):] + [child]
            if child not in state:
                cycle = visit(child)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_the_graph_sees_late_imports():
    graph = import_graph()
    assert 'checkpoints' in graph['train'] and 'config' in graph['checkpoints']
    assert 'synthetic' in graph['checkpoints']  # imported inside checkpoint_settings only


def test_no_import_cycle_among_the_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle: %s' % ' -> '.join(cycle)


def test_no_library_module_imports_train():
    graph = import_graph()
    importers = sorted(name for name, imported in graph.items() if 'train' in imported)
    assert importers == [], 'these modules import train.py: %s' % ', '.join(importers)
