#!/usr/bin/env python3
"""Golden BLEU / chrF scores from the real sacrebleu, for src/train/metrics.rs.

Made with sacrebleu 2.6.0 on CPython 3.11 (the version in ~/quill-ref/venv). CPython >= 3.12
sums floats with compensation in `sum()`, which sacrebleu uses for BLEU's mean log precision, so
goldens made there may differ in the last bits (the Rust tests allow 1e-9 relative). Run from
the repository root:

    ~/quill-ref/venv/bin/pip install sacrebleu==2.6.0
    ~/quill-ref/venv/bin/python tests/reference/sacrebleu_goldens.py

It writes tests/fixtures/sacrebleu/cases.json:

    {"sacrebleu_version": "2.6.0",
     "python_isspace": [code points for which Python's str.isspace() is true],
     "tokenize_13a": [{"input": str, "output": str}, ...],
     "cases": [{"name": str, "hyps": [str], "refs": [str],
                "bleu": {"score", "precisions": [4], "bp", "ratio", "sys_len", "ref_len"},
                "chrf": float}, ...]}

Every score uses sacrebleu's defaults with one reference per hypothesis:
`corpus_bleu(hyps, [refs])` (tokenizer 13a, smooth_method 'exp', max order 4, mixed case, no
effective order) and `corpus_chrf(hyps, [refs])` (chrF2: char order 6, word order 0, beta 2,
whitespace removed, no epsilon smoothing). Scores are sacrebleu's unrounded floats (0-100).
`tokenize_13a` records what `Tokenizer13a()(input)` returns: the tokenizer alone, without the
`rstrip()` that BLEU applies to each segment before tokenizing it.
"""
import json
import os

import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "sacrebleu",
                   "cases.json")

# A small English -> German UI-message test set: (reference, hypothesis), where the hypothesis
# is the reference lightly corrupted the way an MT system would (synonyms, dropped or added
# words, word order, casing, ASCII-fied umlauts and quotes, punctuation).
UI_CORPUS = [
    ("Datei öffnen", "Datei öffnen"),
    ("Änderungen speichern?", "Änderungen sichern?"),
    ("Möchten Sie die Änderungen an „Dokument1“ speichern?",
     "Wollen Sie die Änderungen an „Dokument1“ speichern?"),
    ("Die Datei konnte nicht gefunden werden.", "Die Datei wurde nicht gefunden."),
    ("Verbindung zum Server fehlgeschlagen.", "Verbindung mit dem Server fehlgeschlagen."),
    ("Bitte geben Sie Ihr Passwort ein.", "Bitte Passwort eingeben."),
    ("Passwort vergessen?", "Passwort vergessen?"),
    ("Einstellungen", "Optionen"),
    ("Abbrechen", "Abbrechen"),
    ("Schließen", "Schliessen"),
    ("Größe ändern", "Grösse ändern"),
    ("Das Update wurde erfolgreich installiert.", "Update erfolgreich installiert."),
    ("Es sind 3 neue Nachrichten vorhanden.", "Sie haben 3 neue Nachrichten."),
    ("Speicherplatz fast voll: noch 1,5 GB frei.", "Speicher fast voll: 1,5 GB frei."),
    ("Version 2.4.1 ist verfügbar.", "Version 2.4.1 steht zur Verfügung."),
    ("Herunterladen (12 MB)", "Download (12 MB)"),
    ("Zuletzt geändert am 03.05.2024 um 14:30 Uhr", "Zuletzt geändert: 03.05.2024, 14:30 Uhr"),
    ("Sind Sie sicher, dass Sie diesen Eintrag löschen möchten?",
     "Sind Sie sicher, dass Sie den Eintrag löschen wollen?"),
    ("Dieser Vorgang kann nicht rückgängig gemacht werden.",
     "Dieser Vorgang kann nicht rückgängig gemacht werden."),
    ("Ungültige E-Mail-Adresse.", "Ungültige E-Mail Adresse."),
    ("Benutzername oder Passwort ist falsch.", "Benutzername oder Kennwort falsch."),
    ("Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
     "Ihre Sitzung ist abgelaufen, bitte melden Sie sich erneut an."),
    ("Weiter", "Weiter"),
    ("Zurück", "zurück"),
    ("Fertig", "Erledigt"),
    ("Drucken …", "Drucken..."),
    ("Suchen und Ersetzen", "Suchen &amp; Ersetzen"),
    ("Keine Ergebnisse für „Straße“ gefunden.", "Keine Ergebnisse für &quot;Strasse&quot; gefunden."),
    ("Seite 4 von 12", "Seite 4 / 12"),
    ("Alle auswählen", "Alles auswählen"),
    ("Ausschneiden", "Ausschneiden"),
    ("In die Zwischenablage kopiert.", "In Zwischenablage kopiert."),
    ("Neues Fenster öffnen", "Ein neues Fenster öffnen"),
    ("Vollbildmodus beenden", "Vollbild beenden"),
    ("Die Datei ist zu groß (max. 25 MB).", "Die Datei ist zu groß (maximal 25 MB)."),
    ("Hochladen fehlgeschlagen: Zeitüberschreitung der Verbindung.",
     "Upload fehlgeschlagen: Zeitüberschreitung der Verbindung."),
    ("Benachrichtigungen aktivieren", "Benachrichtigungen einschalten"),
    ("Dunkles Design verwenden", "Dunkles Theme verwenden"),
    ("Sprache: Deutsch (Österreich)", "Sprache: Deutsch (Österreich)"),
    ("Ihr Konto wurde gesperrt. Wenden Sie sich an den Administrator.",
     "Ihr Konto wurde gesperrt. Kontaktieren Sie den Administrator."),
    ("Lädt …", "Laden …"),
    ("Ein unerwarteter Fehler ist aufgetreten (Code 0x80070005).",
     "Ein unerwarteter Fehler ist aufgetreten (Code 0x80070005)."),
    ("Erneut versuchen", "Noch einmal versuchen"),
    ("Änderungen verwerfen", "Änderungen verwerfen"),
    ("Hilfe & Support", "Hilfe und Support"),
    ("Über diese App", "Über diese Anwendung"),
    ("Nutzungsbedingungen akzeptieren", "Nutzungsbedingungen annehmen"),
    ("Datenschutzerklärung lesen", "Datenschutzerklärung lesen"),
    ("Synchronisierung läuft – bitte warten.", "Synchronisation läuft - bitte warten."),
    ("Mit Google anmelden", "Anmelden mit Google"),
    ("Profilbild ändern", "Profilfoto ändern"),
    ("Offline verfügbar machen", "Offline verfügbar machen"),
]

# (name, hyps, refs)
CASES = [
    ("identical",
     ["The cat sat on the mat.", "Open the file and save it again."],
     ["The cat sat on the mat.", "Open the file and save it again."]),
    ("disjoint",
     ["alpha beta gamma delta epsilon", "one two three four five six"],
     ["zeta eta theta iota kappa", "sieben acht neun zehn elf zwölf"]),
    ("partial_overlap",
     ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine lives"],
     ["the quick brown fox jumped over a lazy dog", "a stitch in time saves nine"]),
    # Every sentence has fewer than 4 tokens: no 4-grams at all, so the 4-gram precision stays 0
    # and corpus BLEU (no effective order) is 0 although words match.
    ("very_short_no_4grams",
     ["Hallo", "Guten Tag", "Danke schön"],
     ["Hallo", "Guten Morgen", "Danke schön"]),
    # Mostly 1-3 word lines plus one long line: 4-grams exist, some orders match nothing.
    ("very_short_with_one_long",
     ["Ja", "Nein danke", "OK", "das ist ein ganz anderer Satz hier"],
     ["Ja", "Nein", "OK !", "dies ist ein völlig anderer Satz dort"]),
    # Unigrams match but no bigram does: orders 2, 3 and 4 all take the 'exp' smoothing, with
    # the smoothing factor doubling each time.
    ("exp_smoothing_cascade",
     ["d c b a e f g"],
     ["a b c d e x f y g"]),
    # Words match out of order only at unigram and bigram level.
    ("exp_smoothing_orders_3_4",
     ["red green blue yellow red green", "cat dog"],
     ["green red yellow blue green red", "dog cat"]),
    # No word matches, but characters do: BLEU takes the early exit (score 0), chrF does not.
    ("no_word_match_char_overlap",
     ["Speicherung", "Öffnung"],
     ["Speichern", "Öffnen"]),
    # Clipped counts: the hypothesis repeats a word more often than the reference has it.
    ("clipped_repeats",
     ["the the the the the the the", "is is is it it"],
     ["the cat is on the mat", "it is what it is"]),
    ("empty_hypothesis_lines",
     ["Das ist ein Test.", "", "Noch ein Satz mit mehreren Wörtern.", ""],
     ["Das ist ein Test.", "Leer gelassen", "Noch ein Satz mit vielen Wörtern.", "X"]),
    ("all_empty_hypotheses",
     ["", "", ""],
     ["Eins zwei drei", "vier", "fünf sechs"]),
    ("empty_reference_lines",
     ["Hallo Welt, wie geht es?", "Zusätzlicher Text"],
     ["Hallo Welt, wie geht's?", ""]),
    ("both_empty",
     ["", ""],
     ["", ""]),
    # Whitespace only; a hypothesis of a single character (every char order above 1 is empty).
    ("whitespace_and_single_chars",
     ["   ", "a", "ab", "x y"],
     ["\t", "a", "abc", "xy"]),
    ("punctuation_13a_specials",
     ["He said &quot;hello&quot; &amp; left &lt;quickly&gt;.",
      "Pages 10-20, see fig. 3.5 or 1,000 items.",
      "well-\nknown <skipped>issue, right?!",
      "Price: $5.99 (approx.); ratio 3:4 [ok] {x} a|b ~c `d` ^e _f @g #h %i *j +k =l /m \\n",
      "It's a 2020-2021 thing,no doubt.Really,yes.",
      "Trailing dash -\n"],
     ["He said \"hello\" & left <quickly>.",
      "Pages 10 - 20, see fig. 3.5 or 1,000 items.",
      "well-known issue, right?!",
      "Price: $5.99 (approx.); ratio 3:4 [ok] {x} a|b ~c `d` ^e _f @g #h %i *j +k =l /m \\n",
      "It's a 2020 - 2021 thing, no doubt. Really, yes.",
      "Trailing dash -"]),
    ("german_umlauts_eszett",
     ["Die Größe der Straße ist außergewöhnlich schön.", "Über Äpfel und Öl",
      "Grüße aus München"],
     ["Die Größe der Strasse ist aussergewöhnlich schön.", "Über Äpfel und Öl",
      "Grüsse aus München"]),
    # Decomposed umlauts (u + U+0308) are two code points each, as Python counts them.
    ("combining_characters",
     ["Mu\u0308ller und So\u0308hne", "Stra\u00dfe"],
     ["M\u00fcller und S\u00f6hne", "Strasse"]),
    ("mixed_case",
     ["the Quick Brown FOX", "HELLO world", "Berlin ist die Hauptstadt"],
     ["The quick brown fox", "Hello World", "berlin ist die hauptstadt"]),
    # Python's str.split() whitespace: tabs, NBSP, ideographic space, the \x1c-\x1f separators.
    ("unicode_whitespace",
     ["a\tb\u00a0c\u3000d\x1ce\x1ff", "  leading and trailing  \n", "zero\u200bwidth"],
     ["a b c d e f", "leading and trailing", "zero width"]),
    ("hyps_longer_bp_1",
     ["the cat sat on the big red mat today", "open the file now please and then save it"],
     ["the cat sat on the mat", "open the file and save it"]),
    ("hyps_shorter_bp_below_1",
     ["the cat sat on the", "open the file and"],
     ["the cat sat on the mat", "open the file and save it"]),
    # Shorter still, and short enough that no 4-gram exists: score 0 whatever the bp.
    ("hyps_much_shorter_no_4grams",
     ["the cat sat", "open the file"],
     ["the cat sat on the mat", "open the file and save it"]),
    ("single_sentence_exact_length",
     ["one two three four"],
     ["one two three four"]),
    ("ui_en_de", [h for _, h in UI_CORPUS], [r for r, _ in UI_CORPUS]),
]

TOKENIZE_13A = [
    "",
    "   ",
    "Hello, world!",
    "The end.",
    "3.14 and 1,000 but a.b and x,y",
    ".5 ,5 5. 5,",
    "a..b ,,c 1..2",
    "2020-2021 and well-known and 5 -3 and -4",
    "e-mail -\nsplit and soft-\nhyphen",
    "line one\nline two\n",
    "&quot;quoted&quot; &amp; &lt;tag&gt; &amp;lt; &apos;",
    "<skipped> removed and <ski<skipped>pped>",
    "$5.99 (approx.); 3:4 [ok] {x} a|b ~c `d` ^e _f @g #h %i *j +k =l /m \\n",
    "It's a dog's life, isn't it?",
    "Größe ändern – „Straße“ … fertig.",
    "tab\tand\u00a0nbsp\u3000ideographic\x1cfile-sep\u200bzwsp",
    "trailing space \t ",
    "U.S.A. and e.g. etc.",
    "1.000,50 € / 12 %",
]


def bleu_dict(hyps, refs):
    b = sacrebleu.corpus_bleu(hyps, [refs])
    return {"score": b.score, "precisions": list(b.precisions), "bp": b.bp,
            "ratio": b.ratio, "sys_len": b.sys_len, "ref_len": b.ref_len}


def main():
    tok = Tokenizer13a()
    out = {
        "sacrebleu_version": sacrebleu.__version__,
        "python_isspace": [c for c in range(0x110000) if chr(c).isspace()],
        "tokenize_13a": [{"input": s, "output": tok(s)} for s in TOKENIZE_13A],
        "cases": [],
    }
    for name, hyps, refs in CASES:
        assert len(hyps) == len(refs), name
        out["cases"].append({
            "name": name, "hyps": hyps, "refs": refs, "bleu": bleu_dict(hyps, refs),
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        })
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"sacrebleu {sacrebleu.__version__}: {len(out['cases'])} cases, "
          f"{len(out['tokenize_13a'])} tokenizer pairs -> {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
