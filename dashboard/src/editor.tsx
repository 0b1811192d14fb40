// The code editor: CodeMirror 6 with Python or JavaScript highlighting,
// and the deploy's syntax and load errors shown at their line.

import { useEffect, useRef } from 'preact/hooks';
import { EditorState, type Extension } from '@codemirror/state';
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
} from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { bracketMatching, indentOnInput, syntaxHighlighting, defaultHighlightStyle } from '@codemirror/language';
import { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { searchKeymap, highlightSelectionMatches } from '@codemirror/search';
import { lintGutter, setDiagnostics, type Diagnostic } from '@codemirror/lint';
import { python } from '@codemirror/lang-python';
import { javascript } from '@codemirror/lang-javascript';

export interface Problem {
  line: number;
  column?: number;
  message: string;
}

function language(path: string): Extension {
  if (/\.py$/.test(path)) return python();
  if (/\.(mjs|cjs|js)$/.test(path)) return javascript();
  if (/\.(ts|mts)$/.test(path)) return javascript({ typescript: true });
  if (/\.json$/.test(path)) return javascript();
  return [];
}

export function Editor(props: {
  path: string;
  /** The starting text; the editor owns the text after that. */
  value: string;
  onChange: (text: string) => void;
  problem?: Problem | null;
  onSave?: () => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const latest = useRef(props);
  latest.current = props;

  // A new view per file: its own history and language. The view owns its
  // text from then on (`value` is only the starting text): feeding every
  // change back in would race the typing it came from.
  useEffect(() => {
    if (!host.current) return;
    const v = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: props.value,
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          history(),
          drawSelection(),
          indentOnInput(),
          bracketMatching(),
          closeBrackets(),
          highlightActiveLine(),
          highlightSelectionMatches(),
          syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
          lintGutter(),
          EditorState.tabSize.of(4),
          keymap.of([
            { key: 'Mod-s', preventDefault: true, run: () => (latest.current.onSave?.(), true) },
            ...closeBracketsKeymap,
            ...defaultKeymap,
            ...searchKeymap,
            ...historyKeymap,
            indentWithTab,
          ]),
          language(props.path),
          EditorView.contentAttributes.of({ 'aria-label': `Code of ${props.path}` }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) latest.current.onChange(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
  }, [props.path]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const diagnostics: Diagnostic[] = [];
    const p = props.problem;
    if (p && p.line >= 1 && p.line <= v.state.doc.lines) {
      const line = v.state.doc.line(p.line);
      const from = Math.min(line.to, line.from + Math.max(0, (p.column ?? 1) - 1));
      diagnostics.push({ from, to: Math.max(from, line.to), severity: 'error', message: p.message });
      v.dispatch({ selection: { anchor: from }, scrollIntoView: true });
    }
    v.dispatch(setDiagnostics(v.state, diagnostics));
  }, [props.problem, props.path]);

  return <div class="editor" ref={host} />;
}
