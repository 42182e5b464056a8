"""Letters in the project's own words: GDPR requests, complaints, change notices; English, French, German.

A letter is plain text (the e-mail body, the text to paste into a web form) and the same text laid out
as a PDF for the post. The wording cites the article that grants the right; the one-month deadline is
Article 12(3) GDPR, extendable by two further months when the controller says so within the first month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fpdf import FPDF

LANGUAGES = ("en", "fr", "de")
REQUEST_TYPES: dict[str, int] = {
    "access": 15,
    "rectification": 16,
    "erasure": 17,
    "restriction": 18,
    "portability": 20,
    "objection": 21,
}

# Countries whose official language we write by default (else English).
_COUNTRY_LANGUAGE = {
    "FR": "fr", "BE": "fr", "LU": "fr", "MC": "fr",
    "DE": "de", "AT": "de", "LI": "de", "CH": "de",
}  # fmt: skip

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
}


def format_date(day: date, lang: str) -> str:
    month = _MONTHS[lang].split()[day.month - 1]
    if lang == "de":
        return f"{day.day}. {month} {day.year}"
    return f"{day.day} {month} {day.year}"


def pick_language(request_language: str | None, country: str | None, override: str | None = None) -> str:
    """The override, else the directory's request language, else the vendor's country, else English."""
    if override:
        lang = override.strip().lower()
        if lang not in LANGUAGES:
            from openvrm.errors import InvalidValue

            raise InvalidValue(f"letters are written in {', '.join(LANGUAGES)}, not {override!r}")
        return lang
    if request_language and request_language.lower() in LANGUAGES:
        return request_language.lower()
    return _COUNTRY_LANGUAGE.get((country or "").upper(), "en")


_RIGHT_NAMES = {
    "en": {
        "access": "Request for access to my personal data",
        "rectification": "Request to correct my personal data",
        "erasure": "Request to erase my personal data",
        "restriction": "Request to restrict the processing of my personal data",
        "portability": "Request to receive my personal data (data portability)",
        "objection": "Objection to the processing of my personal data",
    },
    "fr": {
        "access": "Demande d'accès à mes données personnelles",
        "rectification": "Demande de rectification de mes données personnelles",
        "erasure": "Demande d'effacement de mes données personnelles",
        "restriction": "Demande de limitation du traitement de mes données personnelles",
        "portability": "Demande de portabilité de mes données personnelles",
        "objection": "Opposition au traitement de mes données personnelles",
    },
    "de": {
        "access": "Antrag auf Auskunft über meine personenbezogenen Daten",
        "rectification": "Antrag auf Berichtigung meiner personenbezogenen Daten",
        "erasure": "Antrag auf Löschung meiner personenbezogenen Daten",
        "restriction": "Antrag auf Einschränkung der Verarbeitung meiner personenbezogenen Daten",
        "portability": "Antrag auf Übertragung meiner personenbezogenen Daten",
        "objection": "Widerspruch gegen die Verarbeitung meiner personenbezogenen Daten",
    },
}

_ASKS = {
    "en": {
        "access": "Under Article 15 of the General Data Protection Regulation (GDPR), please tell me whether "
        "you hold or use personal data about me. If you do, please send me a copy of all of it, and tell me "
        "why you use it, which kinds of data you hold, to whom you have disclosed it, how long you will keep "
        "it, where you obtained it if not from me, and whether you make automated decisions or profiles "
        "about me.",
        "rectification": "Under Article 16 GDPR, please correct the personal data you hold about me that is "
        "wrong, and complete what is incomplete, as described below.",
        "erasure": "Under Article 17 GDPR, please delete all personal data you hold about me, and tell any "
        "recipient to whom you disclosed it that I asked for its deletion (Article 19). If a law obliges you "
        "to keep part of it, please say which data and which law, and delete the rest.",
        "restriction": "Under Article 18 GDPR, please restrict the processing of my personal data: keep it, "
        "but do not otherwise use it until the matter described below is settled.",
        "portability": "Under Article 20 GDPR, please send me the personal data I provided to you, in a "
        "structured, commonly used and machine-readable format (for example CSV or JSON), so that I can "
        "reuse it elsewhere.",
        "objection": "Under Article 21 GDPR, I object to the processing of my personal data, including for "
        "direct marketing and any profiling linked to it. Please stop that processing and confirm that you "
        "have done so.",
    },
    "fr": {
        "access": "En application de l'article 15 du règlement général sur la protection des données "
        "(RGPD), je vous prie de me dire si vous traitez des données me concernant. Si c'est le cas, merci "
        "de m'en remettre une copie complète et de m'indiquer pourquoi vous les utilisez, quelles catégories "
        "vous détenez, à qui vous les avez communiquées, combien de temps vous les gardez, d'où elles "
        "viennent si ce n'est pas de moi, et si elles servent à des décisions automatisées ou à un "
        "profilage.",
        "rectification": "En application de l'article 16 du RGPD, je vous prie de corriger les données "
        "inexactes que vous détenez sur moi et de compléter celles qui sont incomplètes, comme indiqué "
        "ci-dessous.",
        "erasure": "En application de l'article 17 du RGPD, je vous prie d'effacer toutes les données "
        "personnelles que vous détenez sur moi, et d'informer de ma demande les destinataires à qui vous les "
        "avez communiquées (article 19). Si une loi vous oblige à en garder une partie, merci de préciser "
        "lesquelles et en vertu de quelle loi, et d'effacer le reste.",
        "restriction": "En application de l'article 18 du RGPD, je vous prie de limiter le traitement de mes "
        "données : conservez-les, mais ne les utilisez pas autrement tant que la question exposée ci-dessous "
        "n'est pas réglée.",
        "portability": "En application de l'article 20 du RGPD, je vous prie de me transmettre les données "
        "que je vous ai fournies, dans un format structuré, couramment utilisé et lisible par machine (par "
        "exemple CSV ou JSON), afin que je puisse les réutiliser ailleurs.",
        "objection": "En application de l'article 21 du RGPD, je m'oppose au traitement de mes données "
        "personnelles, y compris à des fins de prospection et de tout profilage qui s'y rattache. Merci "
        "d'y mettre fin et de me le confirmer.",
    },
    "de": {
        "access": "Gemäß Artikel 15 der Datenschutz-Grundverordnung (DSGVO) bitte ich Sie um Auskunft, ob "
        "Sie personenbezogene Daten über mich verarbeiten. Falls ja, senden Sie mir bitte eine vollständige "
        "Kopie dieser Daten und teilen Sie mir mit, zu welchen Zwecken Sie sie nutzen, welche Kategorien Sie "
        "speichern, an wen Sie sie weitergegeben haben, wie lange Sie sie aufbewahren, woher sie stammen, "
        "wenn nicht von mir, und ob Sie damit automatisierte Entscheidungen oder Profile erstellen.",
        "rectification": "Gemäß Artikel 16 DSGVO bitte ich Sie, die unrichtigen Daten, die Sie über mich "
        "gespeichert haben, zu berichtigen und unvollständige Daten zu ergänzen, wie unten beschrieben.",
        "erasure": "Gemäß Artikel 17 DSGVO bitte ich Sie, alle personenbezogenen Daten, die Sie über mich "
        "gespeichert haben, zu löschen und die Empfänger, an die Sie sie weitergegeben haben, über meinen "
        "Antrag zu informieren (Artikel 19). Wenn ein Gesetz Sie verpflichtet, einen Teil aufzubewahren, "
        "nennen Sie mir bitte die Daten und das Gesetz und löschen Sie den Rest.",
        "restriction": "Gemäß Artikel 18 DSGVO bitte ich Sie, die Verarbeitung meiner Daten einzuschränken: "
        "Bewahren Sie sie auf, aber nutzen Sie sie nicht anderweitig, bis die unten beschriebene Frage "
        "geklärt ist.",
        "portability": "Gemäß Artikel 20 DSGVO bitte ich Sie, mir die Daten, die ich Ihnen bereitgestellt "
        "habe, in einem strukturierten, gängigen und maschinenlesbaren Format (zum Beispiel CSV oder JSON) "
        "zu übermitteln, damit ich sie anderswo weiterverwenden kann.",
        "objection": "Gemäß Artikel 21 DSGVO widerspreche ich der Verarbeitung meiner personenbezogenen "
        "Daten, auch zu Zwecken der Direktwerbung und eines damit verbundenen Profilings. Bitte beenden Sie "
        "diese Verarbeitung und bestätigen Sie mir das.",
    },
}

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Dear Sir or Madam,",
        "closing": "Yours faithfully,",
        "identify": "So that you can find my records, here is how you know me:",
        "details": "Details:",
        "customer": "Customer number",
        "ref": "customer number",
        "deadline": "Article 12(3) GDPR gives you one month from receipt to answer, that is by {deadline}. "
        "If you need the further two months that the same article allows, please tell me so, with your "
        "reasons, within that month.",
        "no_fee": "This request is free of charge (Article 12(5) GDPR). Please answer in writing to the "
        "address this request came from.",
        "date": "{place}{date}",
        "subject": "Subject",
        "notice_subject": "Change of my {what}",
        "notice_body": "Please note that my {what} has changed, and update your records for my account.",
        "old": "Previous",
        "new": "New",
        "notice_gdpr": "Keeping this information accurate is your duty under Article 5(1)(d) GDPR, and my "
        "right under Article 16. Thank you for confirming the change.",
        "complaint_subject": "Complaint under Article 77 GDPR against {vendor}",
        "complaint_body": "I wish to lodge a complaint against {vendor} ({address}). On {sent} I sent them "
        'the request "{right}" under Article {article} GDPR. The deadline of Article 12(3) GDPR ran out on '
        "{deadline}, and my request has not been answered as the law requires (current state: {state}).",
        "complaint_ask": "I ask you to examine this complaint and to take the measures within your powers so "
        "that my rights are respected. A copy of my request and its history is attached.",
        "history": "History of the request",
    },
    "fr": {
        "greeting": "Madame, Monsieur,",
        "closing": "Je vous prie d'agréer, Madame, Monsieur, mes salutations distinguées.",
        "identify": "Pour vous permettre de retrouver mon dossier, voici comment vous me connaissez :",
        "details": "Précisions :",
        "customer": "Numéro de client",
        "ref": "numéro de client",
        "deadline": "L'article 12.3 du RGPD vous donne un mois à compter de la réception pour répondre, soit "
        "jusqu'au {deadline}. Si vous avez besoin de la prolongation de deux mois que prévoit ce même "
        "article, merci de me le dire, motifs à l'appui, dans ce délai d'un mois.",
        "no_fee": "Cette demande est gratuite (article 12.5 du RGPD). Merci de répondre par écrit à "
        "l'adresse d'où elle vous parvient.",
        "date": "{place}le {date}",
        "subject": "Objet",
        "notice_subject": "Changement de {what}",
        "notice_body": "Je vous informe du changement de mon {what} et vous prie de mettre à jour mon "
        "dossier.",
        "old": "Ancien",
        "new": "Nouveau",
        "notice_gdpr": "Tenir ces informations exactes est une obligation de l'article 5.1.d du RGPD, et un "
        "droit que me donne l'article 16. Merci de me confirmer la modification.",
        "complaint_subject": "Plainte au titre de l'article 77 du RGPD contre {vendor}",
        "complaint_body": "Je souhaite déposer une plainte contre {vendor} ({address}). Le {sent}, je lui ai "
        "adressé la demande « {right} » au titre de l'article {article} du RGPD. Le délai de l'article 12.3 "
        "du RGPD a expiré le {deadline} sans que ma demande ait reçu la réponse que la loi exige (état "
        "actuel : {state}).",
        "complaint_ask": "Je vous demande d'examiner cette plainte et de prendre les mesures qui relèvent de "
        "vos pouvoirs pour que mes droits soient respectés. Une copie de ma demande et de son historique est "
        "jointe.",
        "history": "Historique de la demande",
    },
    "de": {
        "greeting": "Sehr geehrte Damen und Herren,",
        "closing": "Mit freundlichen Grüßen",
        "identify": "Damit Sie meine Daten finden, hier die Angaben, unter denen Sie mich kennen:",
        "details": "Einzelheiten:",
        "customer": "Kundennummer",
        "ref": "Kundennummer",
        "deadline": "Nach Artikel 12 Absatz 3 DSGVO haben Sie ab Eingang einen Monat Zeit für Ihre Antwort, "
        "also bis zum {deadline}. Wenn Sie die nach demselben Artikel mögliche Verlängerung um zwei weitere "
        "Monate benötigen, teilen Sie mir das bitte innerhalb dieses Monats mit Begründung mit.",
        "no_fee": "Dieser Antrag ist unentgeltlich (Artikel 12 Absatz 5 DSGVO). Bitte antworten Sie "
        "schriftlich an die Adresse, von der dieser Antrag kommt.",
        "date": "{place}{date}",
        "subject": "Betreff",
        "notice_subject": "Änderung meiner Angaben: {what}",
        "notice_body": "Bitte beachten Sie, dass sich meine Angabe „{what}“ geändert hat, und "
        "aktualisieren Sie Ihre Unterlagen zu meinem Konto.",
        "old": "Bisher",
        "new": "Neu",
        "notice_gdpr": "Diese Daten richtig zu halten, ist Ihre Pflicht nach Artikel 5 Absatz 1 Buchstabe d "
        "DSGVO und mein Recht nach Artikel 16. Bitte bestätigen Sie mir die Änderung.",
        "complaint_subject": "Beschwerde nach Artikel 77 DSGVO gegen {vendor}",
        "complaint_body": "Ich möchte eine Beschwerde gegen {vendor} ({address}) einreichen. Am {sent} habe "
        "ich dort den Antrag „{right}“ nach Artikel {article} DSGVO gestellt. Die Frist nach Artikel 12 "
        "Absatz 3 DSGVO ist am {deadline} abgelaufen, ohne dass mein Antrag wie gesetzlich vorgeschrieben "
        "beantwortet wurde (aktueller Stand: {state}).",
        "complaint_ask": "Ich bitte Sie, diese Beschwerde zu prüfen und im Rahmen Ihrer Befugnisse dafür zu "
        "sorgen, dass meine Rechte gewahrt werden. Eine Kopie meines Antrags und seines Verlaufs liegt bei.",
        "history": "Verlauf des Antrags",
    },
}

FIELD_NAMES = {
    "en": {"address": "postal address", "email": "e-mail address", "phone": "phone number",
           "name": "name", "iban": "bank account (IBAN)", "given-name": "given name",
           "family-name": "family name"},
    "fr": {"address": "adresse postale", "email": "adresse électronique", "phone": "numéro de téléphone",
           "name": "nom", "iban": "compte bancaire (IBAN)", "given-name": "prénom",
           "family-name": "nom de famille"},
    "de": {"address": "Postanschrift", "email": "E-Mail-Adresse", "phone": "Telefonnummer",
           "name": "Name", "iban": "Bankverbindung (IBAN)", "given-name": "Vorname",
           "family-name": "Nachname"},
}  # fmt: skip

ELEMENT_LABELS = {
    "en": {"name": "Name", "email": "E-mail", "address": "Postal address", "birthdate": "Date of birth"},
    "fr": {"name": "Nom", "email": "Adresse électronique", "address": "Adresse postale",
           "birthdate": "Date de naissance"},
    "de": {"name": "Name", "email": "E-Mail", "address": "Anschrift", "birthdate": "Geburtsdatum"},
}  # fmt: skip


def right_name(kind: str, lang: str) -> str:
    return _RIGHT_NAMES[lang][kind]


@dataclass(frozen=True)
class Letter:
    """A letter ready to send: ``body`` is the e-mail text and the text to paste into a web form."""

    language: str
    subject: str
    body: str
    sender_lines: tuple[str, ...] = ()
    recipient_lines: tuple[str, ...] = ()
    place_date: str = ""
    appendix_title: str | None = None
    appendix: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "subject": self.subject,
            "body": self.body,
            "sender": list(self.sender_lines),
            "recipient": list(self.recipient_lines),
            "place_date": self.place_date,
        }

    def pdf(self) -> bytes:
        return letter_pdf(self)


def _block(lines: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {label}: {value}" for label, value in lines)


def request_letter(
    *,
    kind: str,
    lang: str,
    identity: list[tuple[str, str]],
    details: str,
    deadline: date,
    signer: str,
    sender_lines: tuple[str, ...] = (),
    recipient_lines: tuple[str, ...] = (),
    today: date,
    customer_number: str | None = None,
    place: str = "",
) -> Letter:
    w = _WORDS[lang]
    subject = right_name(kind, lang)
    if customer_number:
        subject += f" ({w['ref']} {customer_number})"
    parts = [w["greeting"], _ASKS[lang][kind]]
    if details.strip():
        parts.append(f"{w['details']}\n{details.strip()}")
    ident = list(identity)
    if customer_number and not any(v == customer_number for _, v in ident):
        ident.insert(0, (w["customer"], customer_number))
    if ident:
        parts.append(f"{w['identify']}\n{_block(ident)}")
    parts += [
        w["deadline"].format(deadline=format_date(deadline, lang)),
        w["no_fee"],
        f"{w['closing']}\n{signer}",
    ]
    return Letter(
        language=lang,
        subject=subject,
        body="\n\n".join(parts) + "\n",
        sender_lines=sender_lines,
        recipient_lines=recipient_lines,
        place_date=w["date"].format(place=f"{place}, " if place else "", date=format_date(today, lang)),
    )


def change_notice(
    *,
    lang: str,
    field_type: str,
    old: str,
    new: str,
    signer: str,
    today: date,
    customer_number: str | None = None,
    sender_lines: tuple[str, ...] = (),
    recipient_lines: tuple[str, ...] = (),
) -> Letter:
    w = _WORDS[lang]
    what = FIELD_NAMES[lang].get(field_type, field_type)
    subject = w["notice_subject"].format(what=what)
    if customer_number:
        subject += f" ({w['ref']} {customer_number})"
    lines = []
    if customer_number:
        lines.append((w["customer"], customer_number))
    lines += [(w["old"], old), (w["new"], new)]
    body = "\n\n".join(
        [
            w["greeting"],
            w["notice_body"].format(what=what),
            _block(lines),
            w["notice_gdpr"],
            f"{w['closing']}\n{signer}",
        ]
    )
    return Letter(
        language=lang,
        subject=subject,
        body=body + "\n",
        sender_lines=sender_lines,
        recipient_lines=recipient_lines,
        place_date=w["date"].format(place="", date=format_date(today, lang)),
    )


def complaint_letter(
    *,
    lang: str,
    vendor: str,
    vendor_address: str,
    kind: str,
    sent: date,
    deadline: date,
    state: str,
    signer: str,
    today: date,
    history: list[str],
    sender_lines: tuple[str, ...] = (),
    recipient_lines: tuple[str, ...] = (),
) -> Letter:
    w = _WORDS[lang]
    body = "\n\n".join(
        [
            w["greeting"],
            w["complaint_body"].format(
                vendor=vendor,
                address=vendor_address,
                sent=format_date(sent, lang),
                right=right_name(kind, lang),
                article=REQUEST_TYPES[kind],
                deadline=format_date(deadline, lang),
                state=state,
            ),
            w["complaint_ask"],
            f"{w['closing']}\n{signer}",
        ]
    )
    return Letter(
        language=lang,
        subject=w["complaint_subject"].format(vendor=vendor),
        body=body + "\n",
        sender_lines=sender_lines,
        recipient_lines=recipient_lines,
        place_date=w["date"].format(place="", date=format_date(today, lang)),
        appendix_title=w["history"],
        appendix=tuple(history),
    )


# fpdf2's core fonts are Latin-1: enough for English, French and German once typographic marks that
# Latin-1 lacks are mapped to plain ones.
_LATIN1 = str.maketrans(
    {"’": "'", "‘": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-", "…": "...", "€": "EUR"}
    | {"\u00a0": " ", "\u202f": " ", "œ": "oe", "Œ": "OE"}
)


def _latin1(text: str) -> str:
    return text.translate(_LATIN1).encode("latin-1", errors="replace").decode("latin-1")


def letter_pdf(letter: Letter) -> bytes:
    """An A4 letter: sender top left, recipient in the window position, date, subject, body."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_creator("openvrm")
    pdf.set_title(_latin1(letter.subject))
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(25, 20, 20)
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    for line in letter.sender_lines:
        pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y() + 10, 50))
    pdf.set_font("helvetica", size=11)
    for line in letter.recipient_lines:
        pdf.cell(0, 5.5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(12)
    if letter.place_date:
        pdf.cell(0, 6, _latin1(letter.place_date), align="R", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    pdf.set_font("helvetica", style="B", size=11)
    pdf.multi_cell(0, 6, _latin1(letter.subject), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 5.5, _latin1(letter.body), new_x="LMARGIN", new_y="NEXT")
    if letter.appendix_title:
        pdf.add_page()
        pdf.set_font("helvetica", style="B", size=12)
        pdf.cell(0, 8, _latin1(letter.appendix_title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=10)
        for line in letter.appendix:
            pdf.multi_cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
