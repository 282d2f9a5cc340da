"""The documentation cites only what the project holds, and docs/method.md names functions that exist.

What it proves, on README.md and docs/*.md as they are in the clone (no TensorFlow: modules are parsed with `ast`,
not imported, so this runs in a second):
- every relative link (`[text](target)`, pictures too) names a file of the project, and its `#anchor`, if any, a
  heading of that file (GitHub's anchor rule);
- every project file path cited in the text or in code blocks (`bench/overfit.py`, `quickstart.sh`,
  `docs/training.md`, ...) exists;
- every `module.name` (or `module.Class.method`) in backticks in docs/method.md is a top-level function, class
  or setting of that module;
- README.md has at most 160 lines;
- no project file (*.py, *.md, *.sh, .ci/*) mentions the paper notes or helper contract that lived outside the
  project, nor the folder beside the clone by its relative path: the real data's location has one home,
  `config.COCO_SAMPLE_DIR`.
"""
import ast
import glob
import os
import re

import pytest

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO_DIR, 'README.md')] + sorted(glob.glob(os.path.join(REPO_DIR, 'docs', '*.md')))
MAX_README_LINES = 160

# Spelled in pieces so that this file does not mention them itself.
OUTSIDE_NAMES = ('PAPER' + '.md', 'HELPERS' + '.md', '..' + '/shared')

FENCE = re.compile(r'^```.*?^```', re.S | re.M)
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
# A file path of the project: a name ending in .py, .sh or .md, optionally under folders; no placeholders.
PATH = re.compile(r'(?<![\w./<-])((?:[\w.-]+/)*[\w-]+\.(?:py|sh|md))(?![\w/*<>])')
BACKTICKED = re.compile(r'`([^`\n]+)`')
# `module.name`, `module.Class.member`, possibly called: `post_proc.decode(outputs, stride, image_shape)`.
REFERENCE = re.compile(r'^([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?(?:\(.*\))?$')
FILE_NAME = re.compile(r'^[\w.-]+\.(?:py|sh|md|json|png|jpg|txt|pb|ckpt)$')


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def relative(path):
    return os.path.relpath(path, REPO_DIR)


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path):
    """The anchors of every heading of a markdown file (outside code blocks), duplicates numbered as GitHub."""
    found, seen = set(), {}
    for line in FENCE.sub('', read(path)).splitlines():
        match = re.match(r'#{1,6}\s+(.*)', line)
        if match:
            name = anchor(match.group(1))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else '%s-%d' % (name, count))
    return found


def test_the_docs_exist():
    names = {os.path.basename(path) for path in DOCS}
    for topic in ('method', 'data', 'network', 'training', 'decoding', 'evaluation', 'inference', 'benchmarks',
                  'choices', 'reliability'):
        assert topic + '.md' in names, 'docs/%s.md is missing' % topic


@pytest.mark.parametrize('doc', DOCS, ids=relative)
def test_relative_links_and_their_anchors_exist(doc):
    text = FENCE.sub('', read(doc))
    broken = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition('#')
        path = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if not path.startswith(REPO_DIR + os.sep) or not os.path.exists(path):
            broken.append('%s (no such file in the project)' % target)
        elif fragment and path.endswith('.md') and fragment not in anchors(path):
            broken.append('%s (no heading with that anchor in %s)' % (target, relative(path)))
    assert not broken, '%s: broken links: %s' % (relative(doc), '; '.join(broken))


@pytest.mark.parametrize('doc', DOCS, ids=relative)
def test_cited_file_paths_exist(doc):
    missing = set()
    for path in PATH.findall(read(doc)):
        candidates = [os.path.join(REPO_DIR, path), os.path.join(os.path.dirname(doc), path)]
        if not any(os.path.exists(candidate) for candidate in candidates):
            missing.add(path)
    assert not missing, '%s cites files the project does not hold: %s' % (relative(doc), sorted(missing))


def top_level_names(module_path):
    """Module-level names of a Python file: {name: set of its class's attribute names (empty for others)}."""
    names = {}
    for node in ast.parse(read(module_path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(item.name)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
            names[node.name] = members
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = set()
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split('.')[0]] = set()
    return names


def test_method_md_references_resolve():
    text = read(os.path.join(REPO_DIR, 'docs', 'method.md'))
    parsed, checked, unresolved = {}, 0, []
    for span in BACKTICKED.findall(text):
        match = REFERENCE.match(span)
        if not match or FILE_NAME.match(span):  # `config.py`, `config.json` are files, not names in them
            continue
        module, name, member = match.groups()
        module_path = os.path.join(REPO_DIR, module + '.py')
        if not os.path.exists(module_path):
            continue  # not a project module: `x.y` in prose, a file name, ...
        if module not in parsed:
            parsed[module] = top_level_names(module_path)
        checked += 1
        if name not in parsed[module]:
            unresolved.append('%s.%s' % (module, name))
        elif member and parsed[module][name] and member not in parsed[module][name]:
            unresolved.append('%s.%s.%s' % (module, name, member))
    assert checked >= 20, 'docs/method.md should name the functions that implement the method (%d found)' % checked
    assert not unresolved, 'docs/method.md names what its modules do not define: %s' % sorted(set(unresolved))


def test_readme_is_an_overview():
    lines = read(os.path.join(REPO_DIR, 'README.md')).count('\n')
    assert lines <= MAX_README_LINES, 'README.md has %d lines, at most %d: move details to docs/' % (
        lines, MAX_README_LINES)


def project_files():
    """*.py, *.md and *.sh files of the project and everything under .ci/ (hidden folders and caches left out)."""
    for root, dirs, files in os.walk(REPO_DIR):
        at_top = root == REPO_DIR
        dirs[:] = [d for d in dirs if d != '__pycache__' and (not d.startswith('.') or (at_top and d == '.ci'))]
        in_ci = relative(root).split(os.sep)[0] == '.ci'
        for name in files:
            if in_ci or name.endswith(('.py', '.md', '.sh')):
                yield os.path.join(root, name)


def test_no_project_file_cites_anything_outside_the_project():
    offenders = []
    for path in project_files():
        try:
            text = read(path)
        except UnicodeDecodeError:
            continue
        offenders.extend('%s mentions %s' % (relative(path), name) for name in OUTSIDE_NAMES if name in text)
    assert sorted(relative(path) for path in project_files() if relative(path).startswith('.ci')), '.ci/ not seen'
    assert not offenders, '; '.join(offenders)
