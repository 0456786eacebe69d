"""The French words of the chat: service and document-type labels, the welcome screen, the local AI charter.

Pure data and small pure functions: no Chainlit import, so that they are testable and reusable (docs, CLI).
"""

from __future__ import annotations

from typing import Iterable

from index.documents import ALL_AGENTS

ASSISTANT_NAME = "Collectivia"

SERVICE_LABELS: dict[str, str] = {
    "rh": "Ressources humaines",
    "finances": "Finances et commande publique",
    "urbanisme": "Urbanisme et aménagement",
    "etat-civil": "État civil, élections et cimetières",
    "services-techniques": "Services techniques",
    "dsi": "Numérique et systèmes d'information",
    "communication": "Communication",
    ALL_AGENTS: "Documents ouverts à tous les agents",
}

DOC_TYPE_LABELS: dict[str, str] = {
    "deliberation": "Délibération",
    "procedure": "Procédure",
    "charte": "Charte",
    "fiche": "Fiche service-public.fr",
    "autre": "Autre document",
}

FEEDBACK_TAGS: tuple[str, ...] = ("hallucination", "source manquante", "source obsolète", "incomplet", "hors sujet")

UPLOAD_FORMATS_LABEL = "PDF, DOCX, ODT, HTML, Markdown ou TXT"


def service_label(service: str) -> str:
    """« Ressources humaines (rh) » for a known id, the id itself otherwise."""
    label = SERVICE_LABELS.get(service)
    if service == ALL_AGENTS:
        return label or service
    return f"{label} ({service})" if label else service


def doc_type_label(doc_type: str) -> str:
    return DOC_TYPE_LABELS.get(doc_type, doc_type or "Document")


def join_fr(items: Iterable[str]) -> str:
    """« a », « a et b », « a, b et c »."""
    items = [i for i in items if i]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " et " + items[-1]


CHARTER_RULES: tuple[str, ...] = (
    "Les réponses sont **produites avec l'aide d'une IA** : elles peuvent être fausses ou incomplètes. "
    "Ouvrez les sources citées et vérifiez avant d'utiliser une réponse.",
    "**Vous restez responsable** de ce que vous en faites : aucune décision individuelle ne se prend sur le seul "
    "fondement d'une réponse de l'assistant. Mentionnez « réponse assistée par IA » si vous transmettez un contenu "
    "préparé avec lui.",
    "**N'écrivez aucune donnée personnelle** dans vos questions (nom, adresse, date de naissance, numéro de sécurité "
    "sociale, situation d'un administré ou d'un agent…) : dites « un agent de catégorie C », « un administré ».",
)


def welcome_markdown(
    name: str,
    services: Iterable[str],
    *,
    extractive: bool,
    manager_services: Iterable[str] = (),
    admin: bool = False,
) -> str:
    """The welcome message of a new conversation, for one agent."""
    own = sorted(s for s in services if s != ALL_AGENTS)
    lines = [
        f"### Bonjour {name}",
        "",
        "Je suis **Collectivia**, l'assistant documentaire de la collectivité. Je réponds à vos questions à partir "
        "des documents de la collectivité auxquels vous avez accès, et je cite mes sources.",
        "",
        "**Ce que je sais faire**",
        "- retrouver une règle dans les délibérations, les procédures internes, la charte de l'IA ou les fiches "
        "service-public.fr, et vous citer les passages utiles, numérotés [1], [2]… ;",
        "- ouvrir le document original à la bonne page, d'un clic sur sa source ;",
        "- restreindre la recherche à certains de vos services ou types de documents (icône des réglages, sous la "
        "zone de saisie).",
        "",
        "**Ce que je ne fais pas**",
        "- je ne connais que les documents indexés : si rien ne répond à votre question, je vous le dis plutôt que "
        "d'inventer ;",
        "- je ne prends aucune décision et ne remplace ni votre hiérarchie ni le service compétent ;",
        "- je ne vois pas les documents des services auxquels vous n'appartenez pas.",
        "",
        "**Charte locale de l'IA — à respecter**",
    ]
    lines += [f"{i}. {rule}" for i, rule in enumerate(CHARTER_RULES, start=1)]
    lines += ["", "**Où je cherche pour vous**"]
    if own:
        lines += [f"- {service_label(s)}" for s in own]
    else:
        lines.append("- aucun service ne vous est rattaché : vous n'accédez qu'aux documents ouverts à tous")
    lines.append(f"- {SERVICE_LABELS[ALL_AGENTS].lower().capitalize()} (charte, délibérations, fiches…)")
    if extractive:
        lines += [
            "",
            "_Mode extractif : aucun modèle de langage n'est branché ; mes réponses sont des extraits cités tels "
            "quels des documents._",
        ]
    managed = sorted(s for s in manager_services if s != ALL_AGENTS)
    if admin:
        lines += ["", "**Gestion documentaire** : en tant qu'administrateur, vous pouvez ajouter, remplacer ou "
                  "retirer les documents de tous les services avec les boutons ci-dessous."]
    elif managed:
        lines += ["", "**Gestion documentaire** : vous pouvez ajouter, remplacer ou retirer les documents des "
                  f"services {join_fr(managed)} avec les boutons ci-dessous."]
    return "\n".join(lines)


HELP_MARKDOWN = """# Collectivia — aide et charte d'usage

Collectivia est l'assistant documentaire de la collectivité. Il répond aux questions des agents à partir des
documents de la collectivité auxquels ils ont accès (délibérations, procédures internes, charte locale de l'IA,
fiches service-public.fr) et cite ses sources. Il fonctionne entièrement sur les serveurs de la collectivité :
aucune question ni aucun document ne sort.

## Les règles de la charte locale de l'IA

1. Les réponses sont produites avec l'aide d'une IA : elles peuvent être fausses ou incomplètes. Ouvrez les sources
   citées et vérifiez avant d'utiliser une réponse.
2. Vous restez responsable de ce que vous en faites : aucune décision individuelle ne se prend sur le seul fondement
   d'une réponse de l'assistant. Mentionnez « réponse assistée par IA » si vous transmettez un contenu préparé avec lui.
3. N'écrivez aucune donnée personnelle dans vos questions.

## Bien poser sa question

- Une question précise, en français : « Quel est le délai de dépôt d'une demande de congé ? ».
- Les numéros entre crochets [1], [2] renvoient aux sources affichées sous la réponse ; « Ouvrir le document »
  affiche l'original à la page citée.
- Le bouton des réglages, sous la zone de saisie, restreint la recherche à certains de vos services ou types de
  documents.
- Sous chaque réponse, « Votre avis » permet de signaler une réponse utile ou fausse (hallucination, source
  manquante, obsolète…) : ces avis servent à améliorer l'outil.
"""


def question_too_long(size: int, limit: int) -> str:
    """The answer to a question over ``COLLECTIVIA_CHAT__MAX_QUESTION_CHARS`` characters."""
    def n(x: int) -> str:
        return f"{x:,}".replace(",", "\u202f")

    return (f"_Question trop longue : {n(size)} caractères ({n(limit)} au plus). Posez une question plus courte ; "
            "pour faire consulter un long texte, demandez à un gestionnaire de documents de l'ajouter._")
